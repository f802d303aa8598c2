"""The ``relengine`` command line: schema tools, validation files, the server and its client.

Local commands: ``validate``, ``schema check|fmt|graph|diff``, ``matrix``. ``serve`` runs the gRPC
server. Commands that talk to a server (``--endpoint``, default 127.0.0.1:50051; the key from
``--preshared-key`` or ``RELENGINE_PRESHARED_KEY``; plaintext by default for loopback
endpoints, TLS otherwise, ``--insecure`` / ``--tls`` / ``--ca-cert`` to choose): ``check``,
``write``, ``read``, ``delete``, ``expand``, ``lookup-resources``, ``lookup-subjects``,
``watch``, ``schema read|write``; those options go before the command or after it.
``check --explain --data-dir DIR`` answers on the data directory itself and prints the tree
the check walked (relengine.v1 has no traced check). Errors go to stderr as ``error: CODE:
message``.

Exit codes:

    0  success; for ``check``: the permission is granted
    1  the thing checked does not hold: ``check`` denied (or only conditionally granted: a
       caveat lacks context), a failed assertion, an invalid schema for ``schema check``
    2  bad usage or input: unreadable file, malformed text, INVALID_ARGUMENT,
       FAILED_PRECONDITION (unknown definition or relation, no schema), NOT_FOUND,
       OUT_OF_RANGE (a revision that is unknown or collected)
    3  an internal error (INTERNAL; logged with its traceback when local)
    4  the server is unreachable or too slow: UNAVAILABLE, DEADLINE_EXCEEDED
    5  UNAUTHENTICATED: missing or wrong preshared key
    6  refused: ALREADY_EXISTS, a write precondition that failed, RESOURCE_EXHAUSTED (a limit),
       UNIMPLEMENTED

So a denied check (1) is never confused with a failure to answer (2 and up).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .errors import Code, GuardFileError, GuardViolated, InvalidArgument, PreconditionFailed, RelEngineError, SchemaError, quote

if TYPE_CHECKING:
    from .client import Client
    from .model import Consistency, ObjectRef, RelationshipFilter, Revision, SubjectRef
    from .results import CheckExplanation, CheckResponse, GuardViolation, Precondition
    from .validationfile import FileReport

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_UNAVAILABLE = 4
EXIT_UNAUTHENTICATED = 5
EXIT_REFUSED = 6

_EXIT_BY_CODE = {
    Code.INVALID_ARGUMENT: EXIT_USAGE,
    Code.FAILED_PRECONDITION: EXIT_USAGE,
    Code.NOT_FOUND: EXIT_USAGE,
    Code.OUT_OF_RANGE: EXIT_USAGE,
    Code.INTERNAL: EXIT_INTERNAL,
    Code.UNAVAILABLE: EXIT_UNAVAILABLE,
    Code.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
    Code.ABORTED: EXIT_UNAVAILABLE,
    Code.UNAUTHENTICATED: EXIT_UNAUTHENTICATED,
    Code.ALREADY_EXISTS: EXIT_REFUSED,
    Code.RESOURCE_EXHAUSTED: EXIT_REFUSED,
    Code.UNIMPLEMENTED: EXIT_REFUSED,
}
KEY_ENV = "RELENGINE_PRESHARED_KEY"
ENDPOINT_ENV = "RELENGINE_ENDPOINT"


def exit_code_of(exc: RelEngineError) -> int:
    if isinstance(exc, (PreconditionFailed, GuardViolated)):
        return EXIT_REFUSED
    return _EXIT_BY_CODE.get(exc.code, EXIT_INTERNAL)

log = logging.getLogger("relengine.cli")


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*")
_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
    "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
}
MIN_STORE_SIZE = 1 << 20


def parse_size(text: str) -> int:
    """A byte count written ``64GiB``, ``512MiB``, ``100GB`` or ``1073741824`` (K, M, G, T
    alone are binary, like KiB...), for ``--max-store-size``; at least 1 MiB."""
    match = _SIZE.fullmatch(text.lower())
    if match is None or match.group(2) not in _SIZE_UNITS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: write bytes, or a number and a unit (KiB, MiB, GiB, TiB, "
            "or KB, MB, GB, TB), e.g. 64GiB"
        )
    size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    if size < MIN_STORE_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r} is too small: the store needs at least 1MiB")
    return size


def _store_size_option(p: argparse.ArgumentParser) -> None:
    from .config import DEFAULT_MAX_STORE_SIZE

    p.add_argument(
        "--max-store-size", type=parse_size, default=DEFAULT_MAX_STORE_SIZE, metavar="SIZE",
        help="let the store grow up to SIZE, e.g. 64GiB (the default: room for about 100M "
             "relationships); past it, writes that add data are refused and deletes still work",
    )


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def cmd_schema_check(args: argparse.Namespace) -> int:
    from .schema import compile_schema

    status = EXIT_OK
    for path in args.files:
        try:
            schema = compile_schema(_read(path), path)
        except SchemaError as exc:
            print(exc.render(), file=sys.stderr)
            status = EXIT_FAILED
            continue
        for warning in schema.warnings:
            print(warning.render(), file=sys.stderr)
        print(f"{path}: ok ({len(schema.definitions)} definitions, {len(schema.caveats)} caveats"
              f"{', ' + str(len(schema.warnings)) + ' warnings' if schema.warnings else ''})")
    return status


def cmd_schema_fmt(args: argparse.Namespace) -> int:
    from .schema import compile_schema, print_schema

    status = EXIT_OK
    for path in args.files:
        source = _read(path)
        try:
            text = print_schema(compile_schema(source, path))
        except SchemaError as exc:
            print(exc.render(), file=sys.stderr)
            status = EXIT_FAILED
            continue
        if args.write and path != "-":
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        elif args.check:
            if text != source:
                print(f"{path}: not formatted", file=sys.stderr)
                status = EXIT_FAILED
        else:
            sys.stdout.write(text)
    return status


def cmd_validate(args: argparse.Namespace) -> int:
    from .validationfile import run_on_store, run_validation_file

    engine = None
    if args.datastore is not None or args.data_dir is not None:
        from .service import Engine

        if args.data_dir is not None and not os.path.isdir(args.data_dir):
            raise InvalidArgument(f"--data-dir {quote(args.data_dir)} is not a directory")
        engine = Engine.open(_location(args))
    try:
        return _validate(args, run_validation_file if engine is None else lambda path: run_on_store(path, engine))
    finally:
        if engine is not None:
            engine.close()


def _validate(args: argparse.Namespace, run: Callable[[str], FileReport]) -> int:
    passed = failed = skipped = errors = 0
    skip_reasons: dict[str, int] = {}
    for path in args.files:
        report = run(path)
        for warning in report.warnings:
            print(warning, file=sys.stderr)
        if report.error:
            print(f"ERROR {report.error}")
            errors += 1
            continue
        for outcome in report.outcomes:
            if outcome.status == "failed":
                print(outcome.render())
                failed += 1
            elif outcome.status == "skipped":
                skipped += 1
                skip_reasons[outcome.detail.split(";")[0][:90]] = skip_reasons.get(outcome.detail.split(";")[0][:90], 0) + 1
                if args.verbose:
                    print(outcome.render())
            else:
                passed += 1
                if args.verbose:
                    print(outcome.render())
    summary = f"{passed} passed, {failed + errors} failed"
    if skipped:
        summary += f", {skipped} skipped"
    if skip_reasons and not args.verbose:
        for reason, count in sorted(skip_reasons.items(), key=lambda kv: -kv[1]):
            print(f"skipped {count}: {reason}")
    print(summary)
    return EXIT_FAILED if failed or errors else EXIT_OK


def _datastore_option(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--data-dir", metavar="DIR", help="an LMDB data directory (created if missing)")
    group.add_argument("--datastore", metavar="URI",
                       help="postgresql://USER@HOST:PORT/DB (migrated first: `relengine datastore migrate URI`) "
                            "or lmdb:///PATH")


def _location(args: argparse.Namespace) -> str:
    """Where the store is: ``--datastore`` (checked) or ``--data-dir``."""
    from .service.engine import LMDB_SCHEME, POSTGRES_SCHEMES

    if args.datastore is None:
        return str(args.data_dir)
    if not str(args.datastore).startswith((*POSTGRES_SCHEMES, LMDB_SCHEME)):
        raise InvalidArgument(
            f"--datastore {quote(args.datastore)}: give postgresql://USER@HOST:PORT/DB or lmdb:///PATH "
            "(or --data-dir DIR)"
        )
    return str(args.datastore)


def cmd_datastore_migrate(args: argparse.Namespace) -> int:
    from .service.engine import POSTGRES_SCHEMES

    if not args.uri.startswith(POSTGRES_SCHEMES):
        raise InvalidArgument(f"{quote(args.uri)} is not a PostgreSQL URI (postgresql://USER@HOST:PORT/DB)")
    from .storage.postgres import migrate

    result = migrate(args.uri)
    if result.changed:
        print(f"migrated the database from version {result.before} to {result.after}")
    else:
        print(f"the database is at version {result.after} already; nothing to do")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from .service import Engine

    from .service.engine import POSTGRES_SCHEMES

    location = _location(args)
    # LMDB: commits without fsync; the import syncs once, at its end (storage.importer.bulk_session).
    if location.startswith(POSTGRES_SCHEMES):
        engine = Engine.open(location, max_map_size=args.max_store_size)
    else:
        engine = Engine.open(location, max_map_size=args.max_store_size, sync=False)
    try:
        if args.schema:
            engine.write_schema(_read(args.schema), args.schema)
        show = sys.stderr.isatty() and not args.quiet

        def progress(p: object) -> None:
            if show:
                rate = p.relationships / p.elapsed if p.elapsed else 0.0  # type: ignore[attr-defined]
                print(
                    f"\r{p.lines:>12,} lines  {p.relationships:>12,} relationships  "  # type: ignore[attr-defined]
                    f"{p.errors:>6} bad  {rate:>10,.0f}/s",  # type: ignore[attr-defined]
                    end="", file=sys.stderr, flush=True,
                )

        result = engine.import_file(
            args.file, args.format, batch_size=args.batch_size, progress=progress,
            on_error="skip" if args.skip_errors else "abort",
        )
        if show:
            print(file=sys.stderr)
        for error in result.errors:
            print(f"{args.file}:{error.line}: {error.message}", file=sys.stderr)
        print(
            f"imported {result.relationships:,} relationships from {result.lines:,} lines in "
            f"{result.elapsed:.2f} s ({result.rate:,.0f}/s), {result.error_count} bad lines; "
            f"revision {result.revision.token()}"
        )
        return EXIT_OK  # with --skip-errors, skipped lines are listed and counted, not a failure
    finally:
        engine.close()


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> _dt.timedelta:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` as a timedelta; InvalidArgument otherwise."""
    found = _DURATION.fullmatch(text.lower())
    if found is None:
        raise InvalidArgument(f"not a duration: {quote(text)}; write a number and a unit, s, m, h, d or w (7d)")
    return _dt.timedelta(seconds=float(found.group(1)) * _DURATION_UNITS[found.group(2)])


def cmd_guards(args: argparse.Namespace) -> int:
    """``guards write FILE | read | check [--within 7d]``: on the store itself with
    ``--data-dir`` or ``--datastore``, else on the server at ``--endpoint``."""
    within = parse_duration(args.within) if getattr(args, "within", None) else None
    if args.data_dir is None and args.datastore is None:
        with _client(args) as client:
            if args.guards_command == "write":
                try:
                    revision = client.write_guards(_read(args.file))
                except GuardFileError as exc:  # the server knows no file name: put it in front
                    raise GuardFileError(f"{args.file}:{exc}", line=exc.line, column=exc.column) from None
                print(revision.token())
                return EXIT_OK
            if args.guards_command == "read":
                text, revision = client.read_guards()
                return _print_guards(text, revision)
            return _print_violations(client.check_guards(within), args.within)
    engine, _ = _existing_store(args)
    try:
        if args.guards_command == "write":
            revision = engine.write_guards(_read(args.file), args.file)
            print(revision.token())
            return EXIT_OK
        if args.guards_command == "read":
            text, revision = engine.read_guards()
            return _print_guards(text, revision)
        return _print_violations(engine.guard_violations(within), args.within)
    finally:
        engine.close()


def _print_guards(text: str, revision: Revision) -> int:
    sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
    print(f"at {revision.token()}", file=sys.stderr)
    return EXIT_OK


def _print_violations(found: Sequence[GuardViolation], within: str | None) -> int:
    """One line per violation: guard, object, count, when; exit 1 if any."""
    for v in found:
        when = "now" if v.within is None else f"within {within}"
        print(f"{v.guard}\t{v.object}\t{v.count} (at least {v.at_least})\t{when}")
    return EXIT_FAILED if found else EXIT_OK


def cmd_matrix(args: argparse.Namespace) -> int:
    from .report.matrix import compute_matrix, diff_matrices, render, render_diff

    matrix = compute_matrix(_read(args.schema), args.resource, args.subject_type)
    if args.diff:
        if args.format == "html":
            raise InvalidArgument("--diff prints text or markdown")
        other = compute_matrix(_read(args.diff), args.resource, args.subject_type)
        sys.stdout.write(render_diff(diff_matrices(matrix, other), args.format))
        return EXIT_OK
    sys.stdout.write(render(matrix, args.format))
    return EXIT_OK


def _local_engine(data_dir: str) -> Any:
    """The Engine on an existing data directory (a missing one is an error, not a new store)."""
    from .service import Engine

    if not os.path.isdir(data_dir):
        raise InvalidArgument(f"no data directory at {data_dir!r}")
    return Engine.open(data_dir)


def _store_options(p: argparse.ArgumentParser, what: str) -> None:
    """``--data-dir DIR | --datastore URI``, optional: the store ``what`` reads."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--data-dir", metavar="DIR", help=f"{what} on this LMDB data directory")
    group.add_argument("--datastore", metavar="URI", help=f"{what} on this store: postgresql://USER@HOST:PORT/DB or lmdb:///PATH")


def _existing_store(args: argparse.Namespace) -> tuple[Any, str]:
    """The Engine on the store ``--data-dir`` or ``--datastore`` names, which must exist (an
    LMDB directory is not created here), and how to name it in output (no user or password)."""
    from urllib.parse import urlsplit

    from .service.engine import LMDB_SCHEME, POSTGRES_SCHEMES, Engine

    location = _location(args)
    if location.startswith(POSTGRES_SCHEMES):
        parts = urlsplit(location)
        shown = f"{parts.scheme}://{parts.hostname or 'localhost'}{f':{parts.port}' if parts.port else ''}{parts.path}"
        return Engine.open(location), shown
    path = location[len(LMDB_SCHEME):] if location.startswith(LMDB_SCHEME) else location
    if not os.path.isdir(path):
        raise InvalidArgument(f"no data directory at {path!r}")
    return Engine.open(location), location


def cmd_schema_diff(args: argparse.Namespace) -> int:
    from .report.impact import render, render_to
    from .schema import compile_schema
    from .schema.diff import diff_schemas

    texts = [_read(args.old), _read(args.new)]
    try:
        old, new = compile_schema(texts[0], args.old), compile_schema(texts[1], args.new)
    except SchemaError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_USAGE
    structure = diff_schemas(old, new)
    if args.data_dir is None and args.datastore is None:
        sys.stdout.write(render([], args.format, structure=structure))
        return EXIT_OK
    engine, where = _existing_store(args)
    try:
        reader = engine.snapshot()
        revision = reader.revision
        reader.close()
        from .model import Consistency

        changes = engine.schema_impact_grouped(texts[0], texts[1], consistency=Consistency.at_exact_snapshot(revision))
        render_to(sys.stdout, changes, args.format, examples=args.examples, structure=structure,
                  where=f"on {where} at {revision.token()}")
    finally:
        engine.close()
    return EXIT_OK


def cmd_schema_graph(args: argparse.Namespace) -> int:
    from .report.graph import render
    from .schema import compile_schema

    try:
        schema = compile_schema(_read(args.schema), args.schema)
    except SchemaError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_FAILED
    sys.stdout.write(render(schema, args.format))
    return EXIT_OK


# -- the server ----------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from .schema import compile_schema
    from .server import logfmt
    from .server.app import ServerConfig, apply_schema, serve
    from .server.spicedb import SpiceDBOptions
    from .wire.spicedb.tokens import MismatchedTokens

    args.data_dir = _location(args)
    _check_read_replicas(args.data_dir, args.read_replicas)
    schema_text = None
    if args.schema and args.worker_index is None:
        schema_text = _read(args.schema)
        try:
            compile_schema(schema_text, args.schema)
        except SchemaError as exc:
            print(exc.render(), file=sys.stderr)
            return EXIT_USAGE
    logfmt.configure(args.log_level or "INFO", **({"worker": args.worker_index} if args.worker_index is not None else {}))
    if schema_text is not None:
        apply_schema(args.data_dir, schema_text, args.schema, max_store_size=args.max_store_size)
    keys = _server_keys(getattr(args, "preshared_key", None))
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise InvalidArgument(f"--workers must be at least 1, got {workers}")
    config = ServerConfig(
        listen=args.listen, workers=workers, threads=args.threads, preshared_key=keys,
        tls_cert=args.tls_cert, tls_key=args.tls_key, metrics_listen=args.metrics_listen,
        max_message_bytes=args.max_message_bytes, grace_seconds=args.grace, gc_interval=args.gc_interval,
        reuse_port=workers > 1 or args.worker_index is not None,
        max_streams_per_method=args.max_streams_per_method, max_streams_per_connection=args.max_streams_per_connection,
        max_store_size=args.max_store_size, **_pool_options(args),
        spicedb=SpiceDBOptions(mismatched_tokens=MismatchedTokens(args.mismatched_zedtoken)),
        read_replicas=tuple(args.read_replicas),
    )
    return serve(args.data_dir, config, worker_index=args.worker_index, ready_fd=args.ready_fd)


def _check_read_replicas(location: str, replicas: list[str]) -> None:
    """Refuse ``--datastore-read-replica`` without a PostgreSQL ``--datastore``, or not a
    PostgreSQL URI itself, before anything starts."""
    from .service.engine import POSTGRES_SCHEMES

    if replicas and not location.startswith(POSTGRES_SCHEMES):
        raise InvalidArgument("--datastore-read-replica needs --datastore postgresql://... (LMDB has no replicas)")
    for uri in replicas:
        if not uri.startswith(POSTGRES_SCHEMES):
            raise InvalidArgument(
                f"--datastore-read-replica {quote(uri)}: give postgresql://USER@HOST:PORT/DB"
            )


def _pool_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--datastore-pool-*`` as the store's keyword arguments (PostgreSQL only)."""
    from .service.engine import POSTGRES_SCHEMES

    options = {name: getattr(args, name) for name in ("pool_min", "pool_max", "pool_timeout")
               if getattr(args, name, None) is not None}
    if options and not str(args.data_dir).startswith(POSTGRES_SCHEMES):
        raise InvalidArgument("--datastore-pool-min/-max/-timeout size the connection pool of a PostgreSQL "
                              "--datastore; an LMDB store has none")
    pool_min, pool_max = options.get("pool_min", 1), options.get("pool_max", 16)
    if pool_min < 0 or pool_max < 1 or pool_min > pool_max:
        raise InvalidArgument(f"--datastore-pool-min {pool_min} and --datastore-pool-max {pool_max}: "
                              "want 0 <= min <= max and max >= 1")
    if "pool_timeout" in options and options["pool_timeout"] <= 0:
        raise InvalidArgument(f"--datastore-pool-timeout must be positive, got {options['pool_timeout']:g}")
    return options


def _pool_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--datastore-pool-min", dest="pool_min", type=int, metavar="N",
                   help="PostgreSQL: connections each worker keeps open (default 1)")
    p.add_argument("--datastore-pool-max", dest="pool_max", type=int, metavar="N",
                   help="PostgreSQL: most connections each worker opens (default 16)")
    p.add_argument("--datastore-pool-timeout", dest="pool_timeout", type=float, metavar="SECONDS",
                   help="PostgreSQL: how long a request waits for a free connection before UNAVAILABLE "
                        "(default 10; never past the request's deadline)")


def _server_keys(given: str | list[str] | None) -> tuple[str, ...] | None:
    """The keys ``serve`` accepts: every ``--preshared-key`` (repeat it to accept several while
    clients move from an old key to a new one), else ``$RELENGINE_PRESHARED_KEY`` (several
    separated by commas); None: no key, every call allowed."""
    if isinstance(given, str):
        given = [given]
    keys = list(given) if given else [k for k in os.environ.get(KEY_ENV, "").split(",")]
    keys = [k.strip() for k in keys]
    if given and any(not k or "," in k for k in keys):
        raise InvalidArgument("a --preshared-key must not be empty or hold a comma")
    keys = [k for k in keys if k]
    return tuple(keys) or None


# -- commands talking to a server -------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    from .client import NO_RETRY, Client, RetryPolicy

    root = None
    if args.ca_cert:
        with open(args.ca_cert, "rb") as fh:
            root = fh.read()
    tls: bool | None = None
    if args.insecure:
        tls = False
    elif args.tls or root is not None:
        tls = True
    key = args.preshared_key or os.environ.get(KEY_ENV) or None
    return Client(
        args.endpoint, preshared_key=key, tls=tls, root_certificates=root, server_name=args.server_name,
        timeout=args.timeout, retry=NO_RETRY if args.no_retry else RetryPolicy(),
    )


def _consistency(args: argparse.Namespace) -> Consistency | None:
    from .model import Consistency

    if getattr(args, "fully_consistent", False):
        return Consistency.fully_consistent()
    if getattr(args, "at_least_as_fresh", None):
        return Consistency.at_least_as_fresh(args.at_least_as_fresh)
    if getattr(args, "at_exact_snapshot", None):
        return Consistency.at_exact_snapshot(args.at_exact_snapshot)
    return None


def _context(args: argparse.Namespace) -> dict[str, Any] | None:
    from .model import parse_context

    if not getattr(args, "context", None):
        return None
    return parse_context(args.context, "--context")


def parse_filter(text: str) -> RelationshipFilter:
    """``TYPE[:ID | :PREFIX*][#RELATION][@SUBJECT_TYPE[:ID][#RELATION]]`` as a RelationshipFilter;
    a subject relation of ``...`` means the subject object itself."""
    from .model import RelationshipFilter, SubjectFilter

    resource, _, subject = text.strip().partition("@")
    resource, _, relation = resource.partition("#")
    rtype, _, rid = resource.partition(":")
    if not rtype:
        raise InvalidArgument(f"filter {quote(text)}: expected TYPE[:ID][#RELATION][@SUBJECT_TYPE[:ID][#RELATION]]")
    prefix = rid[:-1] if rid.endswith("*") else None
    sfilter = None
    if subject:
        shead, _, srel = subject.partition("#")
        stype, _, sid = shead.partition(":")
        sfilter = SubjectFilter(stype, sid or None, ("" if srel == "..." else srel) if srel else None)
    return RelationshipFilter(rtype, None if prefix is not None else (rid or None), prefix, relation or None, sfilter)


def _preconditions(args: argparse.Namespace) -> list[Precondition]:
    from .results import Precondition, PreconditionKind

    out = [Precondition(PreconditionKind.MUST_MATCH, parse_filter(f)) for f in args.must_match or ()]
    out += [Precondition(PreconditionKind.MUST_NOT_MATCH, parse_filter(f)) for f in args.must_not_match or ()]
    return out


def cmd_check(args: argparse.Namespace) -> int:
    from .model import parse_object, parse_relationship, parse_subject

    if len(args.question) == 1:
        rel = parse_relationship(args.question[0])
        resource, permission, subject = rel.resource, rel.relation, rel.subject
    elif len(args.question) == 3:
        resource, permission, subject = parse_object(args.question[0]), args.question[1], parse_subject(args.question[2])
    else:
        raise InvalidArgument("check takes RESOURCE PERMISSION SUBJECT, or one text RESOURCE#PERMISSION@SUBJECT")
    if args.explain:
        return _explain(args, resource, permission, subject)
    if args.data_dir:
        raise InvalidArgument("--data-dir goes with --explain (a plain check asks the server)")
    with _client(args) as client:
        response = client.check(resource, permission, subject, consistency=_consistency(args), context=_context(args))
    return _print_answer(response)


def _explain(args: argparse.Namespace, resource: ObjectRef, permission: str, subject: SubjectRef) -> int:
    """``check --explain``: answered in-process on the data directory (relengine.v1 has no
    traced check), printing the answer, the tree walked and what granted it."""
    from .service import Engine

    if not args.data_dir:
        raise InvalidArgument(
            "--explain answers on the store itself: give --data-dir DIR (the server's data directory); "
            "over the network, a SpiceDB client's CheckPermission with_tracing gives the same trace"
        )
    if not os.path.isdir(args.data_dir):
        raise InvalidArgument(f"--data-dir {quote(args.data_dir)} is not a directory")
    engine = Engine.open(args.data_dir)
    try:
        deadline = time.monotonic() + args.timeout if args.timeout else None
        explanation = engine.explain(
            resource, permission, subject, consistency=_consistency(args), context=_context(args), deadline=deadline
        )
    finally:
        engine.close()
    code = _print_answer(explanation)
    print(explanation.trace.render())
    granted = explanation.granted_by()
    if granted:
        print("granted by:")
        for rel in granted:
            print(f"  {rel}")
    return code


def _print_answer(response: CheckResponse | CheckExplanation) -> int:
    """The answer's line; the exit code of ``check``."""
    from .results import Permissionship

    if response.permissionship is Permissionship.HAS_PERMISSION:
        print(f"allowed at {response.revision.token()}")
        return EXIT_OK
    if response.permissionship is Permissionship.CONDITIONAL_PERMISSION:
        missing = ", ".join(response.result.missing_parameters) or "?"
        print(f"conditional at {response.revision.token()} (missing context: {missing})")
        return EXIT_FAILED
    print(f"denied at {response.revision.token()}")
    return EXIT_FAILED


def _relationship_lines(args: argparse.Namespace) -> list[str]:
    lines = list(args.relationships)
    if args.file:
        lines += [line.strip() for line in _read(args.file).splitlines()]
    return [line for line in lines if line and not line.startswith("//") and not line.startswith("#")]


def cmd_write(args: argparse.Namespace) -> int:
    from .model import parse_relationship
    from .results import Operation, RelationshipUpdate

    operation = Operation[args.operation.upper()]
    updates = [RelationshipUpdate(operation, parse_relationship(line)) for line in _relationship_lines(args)]
    if not updates:
        raise InvalidArgument("nothing to write: give relationships as arguments or with --file")
    if args.dry_run or args.impact:
        return _write_impact(args, updates)
    with _client(args) as client:
        revision = client.write(updates, _preconditions(args))
    print(revision.token())
    return EXIT_OK


def _write_impact(args: argparse.Namespace, updates: list[Any]) -> int:
    """``write --dry-run --impact``: on the data directory itself (relengine.v1 has no dry
    run), inside a transaction that is aborted."""
    from .report.impact import render

    if not (args.dry_run and args.impact):
        raise InvalidArgument("--dry-run and --impact go together: the impact of a write that is not made")
    if not args.data_dir and not args.datastore:
        raise InvalidArgument("write --dry-run --impact answers on the store itself: give --data-dir DIR or --datastore URI")
    engine, where = _existing_store(args)
    try:
        changes = engine.write_impact(updates, _preconditions(args))
        revision = engine.head_revision()
    finally:
        engine.close()
    sys.stdout.write(render(changes, args.format, examples=args.examples,
                            where=f"of this write on {where} at {revision.token()} (not written)"))
    return EXIT_OK


def cmd_read(args: argparse.Namespace) -> int:
    with _client(args) as client:
        last = None
        for result in client.read(parse_filter(args.filter), consistency=_consistency(args), limit=args.limit, cursor=args.cursor):
            print(result.relationship)
            last = result.cursor
    if args.limit and last:
        print(f"next cursor: {last}", file=sys.stderr)
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        result = client.delete(parse_filter(args.filter), limit=args.limit, preconditions=_preconditions(args))
    print(f"deleted {result.deleted} ({'complete' if result.complete else 'partial: run again for the rest'}) at {result.revision.token()}")
    return EXIT_OK


def cmd_expand(args: argparse.Namespace) -> int:
    with _client(args) as client:
        tree, revision = client.expand(args.resource, args.permission, consistency=_consistency(args))
    print(tree.render())
    print(f"at {revision.token()}", file=sys.stderr)
    return EXIT_OK


def cmd_lookup_resources(args: argparse.Namespace) -> int:
    with _client(args) as client:
        stream = client.lookup_resources(
            args.resource_type, args.permission, args.subject, consistency=_consistency(args),
            context=_context(args), limit=args.limit, cursor=args.cursor,
        )
        last = None
        for result in stream:
            suffix = f" (conditional: {', '.join(result.missing_parameters)})" if result.missing_parameters else ""
            print(f"{args.resource_type}:{result.resource_id}{suffix}")
            last = result.cursor
    if args.limit and last:
        print(f"next cursor: {last}", file=sys.stderr)
    return EXIT_OK


def cmd_lookup_subjects(args: argparse.Namespace) -> int:
    subject_type, _, subject_relation = args.subject_type.partition("#")
    with _client(args) as client:
        stream = client.lookup_subjects(
            args.resource, args.permission, subject_type, subject_relation=subject_relation or None,
            consistency=_consistency(args), context=_context(args), limit=args.limit, cursor=args.cursor,
        )
        last = None
        for result in stream:
            text = str(result.subject)
            if result.excluded:
                text += " - {" + ", ".join(str(s) for s in result.excluded) + "}"
            print(text)
            last = result.cursor
    if args.limit and last:
        print(f"next cursor: {last}", file=sys.stderr)
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    seen = 0
    with _client(args) as client:
        stream = client.watch(args.after, timeout=args.duration)
        try:
            for change in stream:
                if change.schema_changed and change.relationship is None:
                    print(f"{change.revision.token()} SCHEMA", flush=True)
                else:
                    print(f"{change.revision.token()} {change.operation.value} {change.relationship}", flush=True)
                seen += 1
                if args.count is not None and seen >= args.count:
                    stream.cancel()
                    break
        except RelEngineError as exc:
            if exc.code is Code.DEADLINE_EXCEEDED and args.duration is not None:
                return EXIT_OK  # --duration elapsed: the normal end
            raise
    return EXIT_OK


def cmd_schema_read(args: argparse.Namespace) -> int:
    with _client(args) as client:
        text, revision = client.read_schema(consistency=_consistency(args))
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    print(f"at {revision.token()}", file=sys.stderr)
    return EXIT_OK


def cmd_schema_write(args: argparse.Namespace) -> int:
    text = _read(args.file)
    with _client(args) as client:
        try:
            revision = client.write_schema(text)
        except SchemaError as exc:
            import dataclasses

            # The server compiled text without a name; the positions are in this file.
            for issue in exc.issues:
                print(dataclasses.replace(issue, source_name=issue.source_name or args.file).render(), file=sys.stderr)
            return EXIT_USAGE
    print(revision.token())
    return EXIT_OK


def _server_options(g: Any, *, defaults: bool) -> None:
    """The options of every command talking to a server, which go before the command
    (``relengine --endpoint X check ...``) or after it. Only the top-level parser has their
    defaults (``defaults``): a command's own would overwrite what was given before it."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    g.add_argument("--endpoint", default=default(os.environ.get(ENDPOINT_ENV, "127.0.0.1:50051")),
                   help="host:port of the server (default 127.0.0.1:50051, or $RELENGINE_ENDPOINT)")
    g.add_argument("--preshared-key", metavar="KEY", default=default(None),
                   help="the server's preshared key (default $RELENGINE_PRESHARED_KEY)")
    g.add_argument("--insecure", action="store_true", default=default(False), help="plaintext even for a non-loopback endpoint")
    g.add_argument("--tls", action="store_true", default=default(False), help="TLS even for a loopback endpoint")
    g.add_argument("--ca-cert", metavar="PEM", default=default(None), help="trust this CA (implies --tls)")
    g.add_argument("--server-name", metavar="NAME", default=default(None), help="the name the server's certificate has, if not the host")
    g.add_argument("--timeout", type=float, default=default(30.0), metavar="SECONDS", help="deadline of the call (default 30)")
    g.add_argument("--no-retry", action="store_true", default=default(False), help="do not retry when the server is unavailable")


def _remote(p: argparse.ArgumentParser, *, consistency: bool = False, context: bool = False, page: bool = False,
            preconditions: bool = False) -> None:
    """The options every command talking to a server takes, and the optional groups."""
    _server_options(p.add_argument_group("server"), defaults=False)
    if consistency:
        c = p.add_mutually_exclusive_group()
        c.add_argument("--fully-consistent", action="store_true", help="answer at the newest revision")
        c.add_argument("--at-least-as-fresh", metavar="TOKEN", help="answer at this revision or a newer one")
        c.add_argument("--at-exact-snapshot", metavar="TOKEN", help="answer at exactly this revision")
    if context:
        p.add_argument("--context", metavar="JSON", help="caveat context, a JSON object")
    if page:
        p.add_argument("--limit", type=int, metavar="N", help="at most N results (the next cursor goes to stderr)")
        p.add_argument("--cursor", metavar="CURSOR", help="resume after a previous page")
    if preconditions:
        p.add_argument("--must-match", action="append", metavar="FILTER", help="fail unless FILTER matches something")
        p.add_argument("--must-not-match", action="append", metavar="FILTER", help="fail if FILTER matches something")


def _impact_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help='text: counts by permission with examples; json: {"gained": [...], "lost": [...]}')
    p.add_argument("--examples", type=int, default=5, metavar="N", help="examples per permission in text (default 5)")


def _add_server_commands(sub: Any, ssub: Any) -> None:
    p = sub.add_parser("serve", help="run the gRPC server on an LMDB data directory or a PostgreSQL database")
    _datastore_option(p)
    p.add_argument("--datastore-read-replica", metavar="URI", action="append", default=[], dest="read_replicas",
                   help="a PostgreSQL streaming replica of --datastore that answers the reads it has caught up "
                        "with (checks, lookups, reads); repeat for several; writes, fully_consistent and Watch "
                        "go to the primary")
    p.add_argument("--schema", metavar="FILE", help="write this schema at startup if it differs from the stored one")
    p.add_argument("--listen", default="127.0.0.1:50051", metavar="HOST:PORT", help="default 127.0.0.1:50051")
    p.add_argument("--workers", type=int, metavar="N", help="worker processes sharing the port (default: the number of cores)")
    p.add_argument("--threads", type=int, default=32, metavar="N", help="RPC threads per worker (default 32)")
    p.add_argument("--max-streams-per-method", type=int, metavar="N",
                   help="open streams of one method, per worker (default: half the threads)")
    p.add_argument("--max-streams-per-connection", type=int, metavar="N",
                   help="open streams of one client connection (default: a quarter of the threads)")
    p.add_argument("--preshared-key", metavar="KEY", default=argparse.SUPPRESS, action="append",  # also before `serve`
                   help="require `authorization: Bearer KEY`; repeat to accept several (key rotation); "
                        "default $RELENGINE_PRESHARED_KEY, several separated by commas")
    p.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain")
    p.add_argument("--tls-key", metavar="PEM", help="and this private key")
    p.add_argument("--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics at http://HOST:PORT/metrics")
    p.add_argument("--max-message-bytes", type=int, default=4 * 1024 * 1024, metavar="N", help="largest message (default 4 MiB)")
    p.add_argument("--grace", type=float, default=10.0, metavar="SECONDS", help="drain time on SIGTERM (default 10)")
    p.add_argument("--gc-interval", type=float, default=600.0, metavar="SECONDS",
                   help="delete expired relationships and old versions this often (default 600; 0: never)")
    p.add_argument("--mismatched-zedtoken", choices=["full", "min-latency", "error"], default="full",
                   help="SpiceDB API: what at_least_as_fresh of a ZedToken minted by another store means: the "
                        "newest revision (full, the default, as SpiceDB), a recent one (min-latency), or an error")
    _store_size_option(p)
    _pool_flags(p)
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check", help="ask a server whether a subject has a permission (exit 0 yes, 1 no)")
    p.add_argument("question", nargs="+", metavar="ARG", help="RESOURCE PERMISSION SUBJECT, or doc:1#view@user:ann")
    p.add_argument("--explain", action="store_true",
                   help="print the tree the check walked and the relationships that granted it (needs --data-dir)")
    p.add_argument("--data-dir", metavar="DIR", help="with --explain: answer in-process on this LMDB data directory")
    _remote(p, consistency=True, context=True)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("write", help="create, touch or delete relationships on a server")
    p.add_argument("relationships", nargs="*", metavar="RELATIONSHIP", help="e.g. doc:1#viewer@user:ann")
    p.add_argument("--operation", choices=("create", "touch", "delete"), default="touch", help="default touch")
    p.add_argument("--file", metavar="FILE", help="more relationships, one a line ('-': stdin)")
    p.add_argument("--dry-run", action="store_true", help="write nothing (with --impact)")
    p.add_argument("--impact", action="store_true",
                   help="print who would gain or lose which permission (with --dry-run and --data-dir or --datastore)")
    _store_options(p, "with --dry-run --impact: answer")
    _impact_options(p)
    _remote(p, preconditions=True)
    p.set_defaults(func=cmd_write)

    p = sub.add_parser("read", help="print the relationships matching a filter")
    p.add_argument("filter", metavar="FILTER", help="TYPE[:ID|:PREFIX*][#RELATION][@SUBJECT_TYPE[:ID][#RELATION]]")
    _remote(p, consistency=True, page=True)
    p.set_defaults(func=cmd_read)

    p = sub.add_parser("delete", help="delete the relationships matching a filter")
    p.add_argument("filter", metavar="FILTER", help="TYPE[:ID|:PREFIX*][#RELATION][@SUBJECT_TYPE[:ID][#RELATION]]")
    p.add_argument("--limit", type=int, metavar="N", help="delete at most N")
    _remote(p, preconditions=True)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("expand", help="print the userset tree of a permission on a resource")
    p.add_argument("resource", metavar="RESOURCE")
    p.add_argument("permission", metavar="PERMISSION")
    _remote(p, consistency=True)
    p.set_defaults(func=cmd_expand)

    p = sub.add_parser("lookup-resources", help="resources of a type on which a subject has a permission")
    p.add_argument("resource_type", metavar="RESOURCE_TYPE")
    p.add_argument("permission", metavar="PERMISSION")
    p.add_argument("subject", metavar="SUBJECT")
    _remote(p, consistency=True, context=True, page=True)
    p.set_defaults(func=cmd_lookup_resources)

    p = sub.add_parser("lookup-subjects", help="subjects of a type that have a permission on a resource")
    p.add_argument("resource", metavar="RESOURCE")
    p.add_argument("permission", metavar="PERMISSION")
    p.add_argument("subject_type", metavar="SUBJECT_TYPE[#RELATION]")
    _remote(p, consistency=True, context=True, page=True)
    p.set_defaults(func=cmd_lookup_subjects)

    p = sub.add_parser("watch", help="print changes as they are committed")
    p.add_argument("--after", metavar="TOKEN", help="start after this revision (default: from now)")
    p.add_argument("--count", type=int, metavar="N", help="stop after N changes")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    _remote(p)
    p.set_defaults(func=cmd_watch)

    p = ssub.add_parser("read", help="print a server's schema")
    _remote(p, consistency=True)
    p.set_defaults(func=cmd_schema_read)
    p = ssub.add_parser("write", help="write a schema file to a server (errors with line:column)")
    p.add_argument("file", metavar="FILE")
    _remote(p)
    p.set_defaults(func=cmd_schema_write)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relengine", description="A relationship-based (Zanzibar-style) authorization engine."
    )
    parser.add_argument("--log-level", default=None, help="logging level (default WARNING; INFO for serve)")
    _server_options(parser.add_argument_group("server (for the commands that talk to one; also after the command)"), defaults=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("validate", help="run the assertions of SpiceDB validation files")
    p.add_argument("files", nargs="+", metavar="FILE")
    _store_options(p, "run the assertions (read-only) on the schema and relationships stored, not the file's,")
    p.add_argument("-v", "--verbose", action="store_true", help="print every assertion, not only failures")
    p.set_defaults(func=cmd_validate)

    schema = sub.add_parser("schema", help="schema tools: check, fmt, graph, diff; read, write (on a server)")
    ssub = schema.add_subparsers(dest="schema_command", metavar="SUBCOMMAND")
    ssub.required = True
    p = ssub.add_parser("check", help="compile schema files; print errors and warnings with line:column")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=cmd_schema_check)
    p = ssub.add_parser("fmt", help="print schema files in canonical form")
    p.add_argument("files", nargs="+", metavar="FILE")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="rewrite the files in place")
    group.add_argument("--check", action="store_true", help="exit 1 if a file is not formatted")
    p.set_defaults(func=cmd_schema_fmt)
    p = ssub.add_parser("graph", help="draw definitions, relations and permission derivations")
    p.add_argument("schema", metavar="SCHEMA")
    p.add_argument("--format", choices=("dot", "mermaid"), default="mermaid")
    p.set_defaults(func=cmd_schema_graph)
    p = ssub.add_parser("diff", help="what changes from one schema file to another, and who gains or loses access")
    p.add_argument("old", metavar="OLD")
    p.add_argument("new", metavar="NEW")
    _store_options(p, "compare the answers on the relationships stored")
    _impact_options(p)
    p.set_defaults(func=cmd_schema_diff)

    p = sub.add_parser("import", help="bulk-load relationships (text lines, CSV or YAML) into a data directory")
    p.add_argument("file", metavar="FILE", help="relationships file (format from the suffix: .csv, .yaml, else text)")
    _datastore_option(p)
    _store_size_option(p)
    p.add_argument("--schema", metavar="FILE", help="write this schema first")
    p.add_argument("--format", choices=("text", "csv", "yaml"), help="override the format guessed from the suffix")
    p.add_argument("--batch-size", type=int, default=10_000, help="relationships per transaction (default 10000; memory grows with it)")
    p.add_argument("--skip-errors", action="store_true", help="leave bad lines out (listed) instead of stopping")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=cmd_import)

    guards = sub.add_parser(
        "guards", help="guards (at least N holders of a permission): on a server, or a store with --data-dir/--datastore")
    gsub = guards.add_subparsers(dest="guards_command", metavar="COMMAND")
    gsub.required = True
    where = "(default: the server at --endpoint)"
    p = gsub.add_parser("write", help="store a guard file (YAML; errors with line:column)")
    p.add_argument("file", metavar="FILE")
    _store_options(p, f"store it {where}")
    _remote(p)
    p.set_defaults(func=cmd_guards)
    p = gsub.add_parser("read", help="print the stored guard file")
    _store_options(p, f"read it {where}")
    _remote(p)
    p.set_defaults(func=cmd_guards)
    p = gsub.add_parser("check", help="list the objects below a guard (exit 1 if any)")
    p.add_argument("--within", metavar="DURATION", help="also those that fall below it within this time (7d, 12h)")
    _store_options(p, f"check {where}")
    _remote(p)
    p.set_defaults(func=cmd_guards)
    datastore = sub.add_parser("datastore", help="datastore administration: migrate a PostgreSQL database")
    dsub = datastore.add_subparsers(dest="datastore_command", metavar="SUBCOMMAND")
    dsub.required = True
    p = dsub.add_parser("migrate", help="create or upgrade relengine's tables in a PostgreSQL database (idempotent)")
    p.add_argument("uri", metavar="URI", help="postgresql://USER@HOST:PORT/DB")
    p.set_defaults(func=cmd_datastore_migrate)

    p = sub.add_parser("matrix", help="role x permission table of a resource type, computed by the engine")
    p.add_argument("schema", metavar="SCHEMA")
    p.add_argument("--resource", required=True, metavar="TYPE", help="the resource type (definition)")
    p.add_argument("--subject-type", default="user", metavar="TYPE", help="who holds the roles (default user)")
    p.add_argument("--format", choices=("text", "markdown", "html"), default="text")
    p.add_argument("--diff", metavar="NEW", help="mark the cells that change with this schema (text or markdown)")
    p.set_defaults(func=cmd_matrix)
    _add_server_commands(sub, ssub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func is not cmd_serve:  # serve logs one logfmt line per event (server/logfmt.py)
        logging.basicConfig(level=getattr(logging, str(args.log_level or "WARNING").upper(), logging.WARNING),
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(args.func(args))
    except RelEngineError as exc:
        name = getattr(exc, "grpc_code", None) or exc.code.value
        print(f"error: {name}: {exc}", file=sys.stderr)
        return exit_code_of(exc)
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception:  # the CLI's one catch-all: anything unexpected is a bug worth a traceback in the log
        log.exception("internal error")
        print("error: INTERNAL: an unexpected error occurred (see the log above)", file=sys.stderr)
        return EXIT_INTERNAL
