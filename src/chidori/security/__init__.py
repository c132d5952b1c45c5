"""Server-side secrets: the first admin's token and the signing key kept under CHIDORI_HOME
(`server_secrets.py`), and the signed, expiring tokens made with that key (`signing.py`).

Who a caller is and what a role may do is domain (`chidori.domain.identity`); checking a
request's credentials is the API's (`chidori.api.deps`).
"""
