"""Producer side: read a manifest, validate every row, write the batch to the job store."""
