"""What the two HTTP edges, the API (`chidori.api`) and the UI (`chidori.ui`), share: below
both of them, above the services. It may speak HTTP (Starlette responses); it never imports
`chidori.api` or `chidori.ui`, and neither edge imports the other's modules for these."""
