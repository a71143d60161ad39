"""Envelope encryption of everything OpenProfiles keeps at rest.

Each domain has a data key produced by a key provider (the local keyring, or any KMS-compatible
endpoint) and stored only wrapped; records are sealed with AES-256-GCM bound to (domain, table,
record id), and searchable keys are stored as blind-index digests. Import from the submodules:
`aead`, `blind_index`, `keyring`, `arns`, `encoding`, `providers`, `domain_keys`, `errors`.
"""
