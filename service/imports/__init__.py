"""Subscriber import and export at scale, shared by the CLI, the API and the admin.

- `csvfile`   reading a file: encoding check, column names, one parsed row at a time
- `addresses` address normalisation at import speed (same result as `normalise_email`)
- `importer`  the chunked, idempotent bulk upsert
- `export`    the streamed CSV export
- `uploads`   imports started from the API: the stored upload, its report
- `jobs`      the RQ jobs (run an import, send its confirmation mails)
- `cli`, `api` thin layers over the above
"""
