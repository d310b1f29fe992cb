"""What the live and leader rooms both call: talking to registries and to the apiserver.

- ``http`` — the one retry loop of every registry request (timeouts, retries with backoff,
  ``Retry-After``, never repeating a create that may have been sent), safe error text, the
  ``Link`` header's next page and the same-origin rule for it, and ``RegistrySource``, the
  base of every registry client;
- ``credentials`` — registry credentials read from their files on every use;
- ``harbor_paging`` — Harbor's paged listings (projects, robots), read once;
- ``kube`` — how a Kubernetes client is found (kubeconfig, in-cluster) and spacegate's own
  namespace;
- ``kube_paging`` — the one loop over ``continue`` tokens: lists of the apiserver as raw
  JSON, pages sized by bytes and parsed as they stream, one item at a time;
- ``backoff`` — the one exponential backoff with jitter;
- ``errors`` — ``SourceError`` and ``describe_api_error``: messages safe to log.

Nothing here knows a room above it; nothing here runs on the admission path.
"""
