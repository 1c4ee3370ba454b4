"""SQL of the audit trail (GEN-10): the hash-chained ``audit_event`` table and the
``audit_journal`` of rows committed with their writes.

What the rows mean, how they are hashed and when they are written is ``app.services.audit``'s;
here is only how they are read and written:

- :mod:`~app.index.audit.journal`: a write's row added in the write's own transaction, read back
  and claimed (deleted) by the writer that chains it;
- :mod:`~app.index.audit.chain`: the batch writer's transaction, under the chain's lock: the
  journal rows it claims, the chain head and PatientIDs, the rows appended (a binary COPY on
  PostgreSQL);
- :mod:`~app.index.audit.events`: the admin search, the export and the chain walk.

Nothing here commits on its own, except the chain transaction, which is one batch.
"""
