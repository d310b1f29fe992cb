"""The image selector's room: what a namespace may deploy, down to repositories and tags.

``spacegate serve`` runs it on its own HTTPS listener in its own process
(:mod:`webhook.selector.process`), so that no selector traffic can slow an admission review.
Every request is authenticated and authorized by the Kubernetes API
(``webhook.clients.access``); the spaces it offers are :func:`policy.visibility.visible_spaces`,
the rule admission decides with; repositories and tags come from the registries with their
listing credential, cached (:mod:`webhook.selector.cache`).

Modules: ``names`` (request parts checked), ``listings`` (Harbor and Docker Registry
clients), ``cache`` (TTL caches, single-flight, stale fallback), ``catalog`` (the answers),
``app`` (routes, errors, security headers), ``server`` (the bounded HTTP protocol),
``process`` (the child process and its feed of snapshots), ``static/`` (the page).
"""
