"""The ingestion pipeline every record goes through: mapping, key resolution, dead-lettering."""

# Records per write transaction of the file loaders (`ingest.bulk`; `openprofiles ingest
# contact-records`). Here, not in `ingest.bulk`, so that a CLI option can default to it without
# importing the pipeline (about 0.7 s) at every command's start.
DEFAULT_BATCH_SIZE = 500
# The longest object (its JSON text, in characters) any path takes: PutProfileObject's Object
# (the model's stringifiedJson), a contact record, a record of a file or of a flow.
MAX_OBJECT_CHARS = 256_000
