-- Idempotency keys scoped by operation and tenant (issue 10): a message_id or
-- correlation_id is the same message only for the same operation of the same
-- tenant. Keys recorded before are rewritten into the new form,
-- '<mid|cid>:<operation>:<tenant, % and : percent-encoded>:<id>', so a
-- redelivery of a message answered before the upgrade is still recognised.
-- The tenant is that of the request the message was answered about; a message
-- answered about no request (a revoke that found nothing to revoke) gets an
-- empty tenant, so its redelivery is handled afresh (and finds the same nothing,
-- or the request registered since). 'nk:' keys already hash the LCM tenant in.
UPDATE inbound_messages
SET idempotency_key = substr(idempotency_key, 1, 4) || operation || ':'
    || replace(replace(COALESCE(
         (SELECT p.tenant FROM privacy_requests p WHERE p.id = inbound_messages.request_id),
         ''), '%', '%25'), ':', '%3A')
    || ':' || substr(idempotency_key, 5)
WHERE substr(idempotency_key, 1, 4) IN ('mid:', 'cid:');
