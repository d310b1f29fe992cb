"""The ``spacegate`` command line (also ``python -m webhook``).

Subcommands are documented in the README. Exit codes of the offline checks are part of the
contract CI pipelines rely on: 0 all admitted, 1 something denied, 2 bad input or usage.
Heavy imports (uvicorn, kubernetes, httpx) happen inside the subcommands that need them, so
``spacegate check`` starts fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from policy.config import ConfigError
from policy.snapshot import Snapshot
from webhook.cli import exits


def build_parser() -> argparse.ArgumentParser:
    """The command line; argparse itself exits 2 (``exits.USAGE``) on a usage error."""
    parser = argparse.ArgumentParser(
        prog="spacegate",
        description="Admission webhook and offline checks for registry-space visibility.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTPS admission webhook")
    serve.add_argument("--config", help="config file (default: the embedded demo config)")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8443)
    tls = serve.add_mutually_exclusive_group()
    tls.add_argument("--cert-dir", help="folder with tls.crt and tls.key (reloaded on change)")
    tls.add_argument("--tls-cert", help="serving certificate file (use with --tls-key)")
    serve.add_argument("--tls-key", help="serving key file (use with --tls-cert)")
    serve.add_argument(
        "--metrics-auth",
        choices=("auto", "on", "off"),
        default="auto",
        help="who may read /metrics: a token allowed to get /metrics (on), anyone (off), "
        "or on whenever a Kubernetes API is configured (auto, the default)",
    )
    serve.add_argument(
        "--selector-port",
        type=int,
        default=None,
        help="the image selector's HTTPS port (default 8444 in live mode with a Kubernetes "
        "API; 0 turns it off)",
    )
    serve.add_argument("--selector-tls-cert", help="the selector's own certificate file")
    serve.add_argument("--selector-tls-key", help="the selector's own key file")
    serve.add_argument(
        "--token-audience",
        action="append",
        default=[],
        help="an audience the selector's tokens must carry (repeatable; default: the "
        "Kubernetes API's)",
    )

    check = sub.add_parser("check", help="check manifests offline (exit 0/1/2)")
    check.add_argument(
        "-f",
        "--filename",
        action="extend",
        nargs="+",
        required=True,
        metavar="FILE_OR_DIR_OR_-",
        help="manifest files, directories or - for stdin (repeatable)",
    )
    check.add_argument("--namespace", "-n", help="namespace for objects that name none")
    check.add_argument("--config", help="config file (default: the embedded demo config)")
    _bindings_option(check)
    check.add_argument("--output", "-o", choices=("table", "json"), default="table")

    explain = sub.add_parser("explain", help="explain the decision for one image")
    explain.add_argument("image")
    explain.add_argument("--namespace", "-n", required=True)
    explain.add_argument("--config")
    _bindings_option(explain)

    images = sub.add_parser("images", help="list what a namespace may use")
    images.add_argument("--namespace", "-n", required=True)
    images.add_argument("--config")
    _bindings_option(images)
    images.add_argument("--output", "-o", choices=("table", "json"), default="table")
    images.add_argument("--space", help="only this space")
    listing = images.add_mutually_exclusive_group()
    listing.add_argument(
        "--repositories",
        action="store_true",
        help="list the repositories of the usable spaces (from the registries; needs --config)",
    )
    listing.add_argument(
        "--tags",
        metavar="REPOSITORY",
        help="list the tags of a repository, named as an image without tag "
        "(harbor.example.com/team-a/web; needs --config)",
    )

    certs = sub.add_parser("certs", help="TLS material")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True)
    generate = certs_sub.add_parser("generate", help="write ca.crt, tls.crt, tls.key")
    generate.add_argument("--service", required=True)
    generate.add_argument("--namespace", required=True)
    generate.add_argument("--out", required=True)
    generate.add_argument("--dns", action="append", default=[], help="extra DNS SAN")
    generate.add_argument("--ip", action="append", default=[], help="extra IP SAN")

    snapshot = sub.add_parser("snapshot", help="sync once from live sources, write a config")
    snapshot.add_argument("--config")
    snapshot.add_argument("-o", "--output", help="output file (default: stdout)")
    snapshot.add_argument(
        "--no-namespaces",
        action="store_true",
        help="keep the config's static namespaces instead of listing them from the cluster",
    )
    audit = sub.add_parser(
        "audit", help="judge what runs in the cluster like check judges manifests"
    )
    audit.add_argument("--config", help="config file (default: the embedded demo config)")
    audit.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, in-cluster)")
    audit.add_argument("--context", help="kubeconfig context")
    scope = audit.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="only this namespace")
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="every namespace (the default)"
    )
    audit.add_argument("-o", "--output", choices=("table", "json"), default="table")
    audit.add_argument(
        "--what-if",
        metavar="FILE",
        help="list what a new config, or RegistrySpaceBinding manifests applied, would refuse "
        "that is admitted today",
    )
    audit.add_argument(
        "--what-if-delete",
        metavar="NAME",
        action="append",
        default=[],
        help="list what deleting this RegistrySpaceBinding would refuse (repeatable)",
    )

    bindings = sub.add_parser("bindings", help="RegistrySpaceBinding objects: export, the CRD")
    bindings_sub = bindings.add_subparsers(dest="bindings_command", required=True)
    export = bindings_sub.add_parser("export", help="write the config's bindings as objects")
    export.add_argument("--config", help="config file (default: the embedded demo config)")
    export.add_argument("-o", "--output", help="output file (default: stdout)")
    crd = bindings_sub.add_parser("crd", help="print the RegistrySpaceBinding CRD")
    crd.add_argument("-o", "--output", help="output file (default: stdout)")

    provision = sub.add_parser(
        "provision", help="one pull-secret provisioning pass (or its plan with --dry-run)"
    )
    provision.add_argument("--config", required=True, help="config file")
    provision.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    provision.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, in-cluster)")
    provision.add_argument("--context", help="kubeconfig context")

    return parser


def _bindings_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bindings",
        action="append",
        metavar="FILE_OR_DIR",
        help="RegistrySpaceBinding objects to judge with (files, directories or -; "
        "repeatable); they count as bindings.source says",
    )


def _snapshot(config_path: str | None, bindings: list[str] | None = None) -> Snapshot:
    """The offline snapshot: the config, and the binding objects given (warnings on stderr;
    a bad object raises ``BindingFileError``)."""
    from webhook.settings import read_config

    config = read_config(config_path)
    if not bindings:
        objects = None
    else:
        from webhook.cli.bindings import load_binding_objects

        objects = load_binding_objects(bindings)
    from webhook.cli.bindings import source_warnings

    for warning in source_warnings(config, objects):
        print(f"spacegate: warning: {warning}", file=sys.stderr)
    return Snapshot.from_config(config, objects)


def _check(args: argparse.Namespace) -> int:
    from webhook.cli.check import check_manifests, to_json, to_table
    from webhook.cli.manifests import ManifestError, load_manifests

    snapshot = _snapshot(args.config, args.bindings)
    try:
        manifests = list(load_manifests(args.filename))
    except ManifestError as exc:
        print(f"spacegate check: {exc}", file=sys.stderr)
        return exits.USAGE
    report = check_manifests(snapshot, manifests, args.namespace or "default")
    if args.output == "json":
        print(to_json(report))
    else:
        print(to_table(report))
    for result in report.results:
        if result.error:
            print(f"spacegate check: {result.source}: {result.error}", file=sys.stderr)
    return report.exit_code


def _explain(args: argparse.Namespace) -> int:
    from webhook.cli.explain import explain

    allowed, text = explain(_snapshot(args.config, args.bindings), args.image, args.namespace)
    print(text)
    return exits.OK if allowed else exits.REFUSED


def _images(args: argparse.Namespace) -> int:
    from webhook.cli.images import run

    return run(
        args.config,
        args.namespace,
        space=args.space,
        repositories=args.repositories,
        tags=args.tags,
        output=args.output,
        bindings=args.bindings,
    )


def _serve(args: argparse.Namespace) -> int:
    from webhook.cli.serve import serve

    if bool(args.tls_cert) != bool(args.tls_key):
        print("spacegate serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return exits.USAGE
    return serve(
        config=args.config,
        host=args.host,
        port=args.port,
        cert_dir=args.cert_dir,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        metrics_auth=args.metrics_auth,
        selector_port=args.selector_port,
        selector_tls_cert=args.selector_tls_cert,
        selector_tls_key=args.selector_tls_key,
        token_audiences=tuple(args.token_audience),
    )


def _certs(args: argparse.Namespace) -> int:
    from webhook.cli.certs import generate_command

    return generate_command(args.service, args.namespace, args.out, args.dns, args.ip)


def _snapshot_cmd(args: argparse.Namespace) -> int:
    from webhook.cli.snapshot import run

    return run(args.config, args.output, kube=False if args.no_namespaces else None)


def _provision(args: argparse.Namespace) -> int:
    from webhook.cli.provision import run

    return run(args.config, dry_run=args.dry_run, kubeconfig=args.kubeconfig, context=args.context)


def _audit(args: argparse.Namespace) -> int:
    from webhook.cli.audit import run

    return run(
        args.config,
        namespace=None if args.all_namespaces else args.namespace,
        output=args.output,
        what_if=args.what_if,
        what_if_delete=args.what_if_delete,
        kubeconfig=args.kubeconfig,
        context=args.context,
    )


def _bindings(args: argparse.Namespace) -> int:
    from webhook.cli.bindings import crd, export

    if args.bindings_command == "crd":
        return crd(args.output)
    return export(args.config, args.output)


COMMANDS = {
    "bindings": _bindings,
    "audit": _audit,
    "provision": _provision,
    "check": _check,
    "explain": _explain,
    "images": _images,
    "serve": _serve,
    "certs": _certs,
    "snapshot": _snapshot_cmd,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"spacegate {args.command}: config error: {exc}", file=sys.stderr)
        return exits.USAGE
    except ValueError as exc:
        from webhook.cli.bindings import BindingFileError

        if not isinstance(exc, BindingFileError):
            raise
        print(f"spacegate {args.command}: {exc}", file=sys.stderr)
        return exits.USAGE
    except KeyboardInterrupt:
        return exits.INTERRUPTED
    except BrokenPipeError:  # `spacegate check ... | head`
        return exits.OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
