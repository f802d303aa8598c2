"""The ``relengine`` command line: schema tools, validation files, import; errors -> exit codes.

Exit codes: 0 success; 1 the thing checked does not hold (a failed assertion, an invalid
schema); 2 bad usage or unreadable input; 3 an unexpected internal error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .errors import RelEngineError, SchemaError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3

log = logging.getLogger("relengine.cli")


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
        try:
            text = print_schema(compile_schema(_read(path), path))
        except SchemaError as exc:
            print(exc.render(), file=sys.stderr)
            status = EXIT_FAILED
            continue
        if args.write and path != "-":
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        elif args.check:
            if text != _read(path):
                print(f"{path}: not formatted", file=sys.stderr)
                status = EXIT_FAILED
        else:
            sys.stdout.write(text)
    return status


def cmd_validate(args: argparse.Namespace) -> int:
    from .validationfile import run_validation_file

    passed = failed = skipped = errors = 0
    skip_reasons: dict[str, int] = {}
    for path in args.files:
        report = run_validation_file(path)
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


def cmd_matrix(args: argparse.Namespace) -> int:
    from .report.matrix import compute_matrix, render

    matrix = compute_matrix(_read(args.schema), args.resource, args.subject_type)
    sys.stdout.write(render(matrix, args.format))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relengine", description="A relationship-based (Zanzibar-style) authorization engine."
    )
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("validate", help="run the assertions of SpiceDB validation files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("-v", "--verbose", action="store_true", help="print every assertion, not only failures")
    p.set_defaults(func=cmd_validate)

    schema = sub.add_parser("schema", help="schema tools: check, fmt")
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

    p = sub.add_parser("matrix", help="role x permission table of a resource type, computed by the engine")
    p.add_argument("schema", metavar="SCHEMA")
    p.add_argument("--resource", required=True, metavar="TYPE", help="the resource type (definition)")
    p.add_argument("--subject-type", default="user", metavar="TYPE", help="who holds the roles (default user)")
    p.add_argument("--format", choices=("text", "markdown", "html"), default="text")
    p.set_defaults(func=cmd_matrix)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return int(args.func(args))
    except RelEngineError as exc:
        print(f"error: {exc.code.value}: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.code.value in ("INVALID_ARGUMENT", "FAILED_PRECONDITION", "NOT_FOUND") else EXIT_FAILED
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception:  # the CLI's one catch-all: anything unexpected is a bug worth a traceback in the log
        log.exception("internal error")
        print("error: INTERNAL: an unexpected error occurred (see the log above)", file=sys.stderr)
        return EXIT_INTERNAL
