"""The fetcher: everything jitaccess fetches from the network, outside hostd (issue 21).

IdP discovery documents and JWKS (`jit idp refresh`, jit-idp-refresh*.service), pulled
revocation lists (`jit revocations fetch`) and the device flow of `jit login`. hostd never
imports this package: it reads what the refresh unit wrote under /var/lib/jit.
"""
