"""The object-store probe's I/O: a SigV4 signer, a minimal S3 client on httpx, and one run's checks."""
