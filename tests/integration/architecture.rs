//! The invariants of ARCHITECTURE.md that can be read off the source: no module
//! imports from a module that imports it back, only `amqp` knows lapin, only
//! `store` runs SQL, and no source file grows past the size a reader can hold.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The top-level module a file belongs to (`src/store/register/pg.rs` → `store`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules `text` refers to as `crate::<module>` in code (a doc
/// link in a comment is not an import).
fn references(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let text = code.as_str();
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `$crate::…` in a macro is the same crate, `crate::{a, b}` is rare: both fine.
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_imports_from_a_module_that_imports_it_back() {
    let src = src_dir();
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in sources(&src) {
        let module = module_of(&src, &file);
        if module == "main" || module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let mut referenced = references(&text);
        referenced.remove(&module);
        uses.entry(module).or_default().extend(referenced);
    }
    let mut circles = Vec::new();
    for (module, referenced) in &uses {
        for other in referenced {
            let back = uses.get(other).is_some_and(|r| r.contains(module));
            if back && module < other {
                circles.push(format!("{module} <-> {other}"));
            }
        }
    }
    assert!(circles.is_empty(), "dependency circles: {circles:?}");
}

#[test]
fn only_amqp_knows_lapin_and_only_store_and_targets_run_sql() {
    let src = src_dir();
    let mut breaches = Vec::new();
    for file in sources(&src) {
        let module = module_of(&src, &file);
        let text = std::fs::read_to_string(&file).unwrap();
        if module != "amqp" && text.contains("lapin::") {
            breaches.push(format!("{} uses lapin", file.display()));
        }
        // The store runs SQL on the worker's own database, targets on the
        // customer databases; nothing else does.
        if module != "store" && module != "targets" && text.contains("sqlx::") {
            breaches.push(format!("{} uses sqlx", file.display()));
        }
    }
    assert!(breaches.is_empty(), "{breaches:?}");
}

#[test]
fn no_source_file_is_over_four_hundred_and_twenty_lines() {
    let long: Vec<String> = sources(&src_dir())
        .into_iter()
        .filter_map(|file| {
            let lines = std::fs::read_to_string(&file).unwrap().lines().count();
            (lines > 420).then(|| format!("{}: {lines} lines", file.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these: {long:?}");
}
