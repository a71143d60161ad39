"""The dead-letter queue: records ingestion could not apply, kept with their reason, listed,
retried and purged (locally), and forwarded to the domain's SQS queue when it has one."""
