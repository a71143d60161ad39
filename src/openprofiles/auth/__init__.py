"""API credentials (access keys for SigV4) and what each role may do."""
