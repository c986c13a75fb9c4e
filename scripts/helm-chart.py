#!/usr/bin/env python3
"""Lints and renders a Helm chart with Helm's own engine, for tests on machines without `helm`.

The PyPI package helm-python-sdk binds the Helm v4 Go SDK (text/template, sprig, chart loading,
values coalescing, values.schema.json validation, lint rules) through a C ABI, so this renders
exactly what `helm template` renders, with no cluster (`lookup` returns nothing).

    helm-chart.py version
    helm-chart.py lint CHART [--values FILE.json] [--strict]      -> JSON lint report
    helm-chart.py template CHART --name N --namespace NS [--values FILE.json]
                                                                   -> JSON {template path: text}
    helm-chart.py schema CHART --values FILE.json                  -> exit 0 valid, 1 invalid

Exit status 3: helm-python-sdk is not installed (pip install helm-python-sdk).
"""
import argparse
import json
import sys

try:
    import helm_python as helm
except ImportError:
    print("helm-python-sdk is not installed: pip install helm-python-sdk", file=sys.stderr)
    sys.exit(3)


def load_values(path):
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version")
    lint = sub.add_parser("lint")
    lint.add_argument("chart")
    lint.add_argument("--values")
    lint.add_argument("--strict", action="store_true")
    template = sub.add_parser("template")
    template.add_argument("chart")
    template.add_argument("--name", required=True)
    template.add_argument("--namespace", required=True)
    template.add_argument("--values")
    schema = sub.add_parser("schema")
    schema.add_argument("chart")
    schema.add_argument("--values", required=True)
    args = parser.parse_args()

    try:
        if args.command == "version":
            print(helm.helm_sdk_version())
        elif args.command == "lint":
            report = helm.lint(args.chart, load_values(args.values), strict=args.strict)
            print(json.dumps(report, indent=2))
        elif args.command == "template":
            with helm.Chart.load(args.chart) as chart:
                rendered = chart.render(
                    load_values(args.values),
                    name=args.name,
                    namespace=args.namespace,
                    is_install=True,
                )
            print(json.dumps(rendered, indent=2, sort_keys=True))
        elif args.command == "schema":
            with helm.Chart.load(args.chart) as chart:
                chart.validate_schema(load_values(args.values))
    except helm.HelmError as e:
        print(f"{args.command} failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
