#!/usr/bin/env python3
"""Writes the YAML edge-case descriptors of this folder byte-exact (bare CRs, tabs, invalid
UTF-8 and deep nesting are easier to get right from code than from an editor).

    python3 generate.py   # rewrites every *.yaml here
"""
from pathlib import Path

HERE = Path(__file__).resolve().parent


def component(name, meta="", spec="", head=""):
    return (
        f"{head}apiVersion: backstage.io/v1alpha1\n"
        "kind: Component\n"
        "metadata:\n"
        f"  name: {name}\n"
        f"{meta}"
        "spec:\n"
        "  type: service\n"
        "  lifecycle: production\n"
        "  owner: team-a\n"
        f"{spec}"
    )


FILES = {}

# --- line breaks that are a bare carriage return -------------------------------------------
FILES["bare-cr-line-breaks.yaml"] = component("cr-only").replace("\n", "\r").encode()
FILES["bare-cr-line-breaks-after-comment.yaml"] = (
    "# Old Mac line ends: the whole file is one comment line\n".replace("\n", "\r")
    + component("cr-after-comment").replace("\n", "\r")
).encode()
FILES["bare-cr-inside-plain-value.yaml"] = component(
    "cr-in-value", meta="  description: first part\rsecond part\n"
).encode()
FILES["bare-cr-inside-quoted-value.yaml"] = component(
    "cr-in-quoted", meta='  description: "first part\rsecond part"\n'
).encode()
FILES["bare-cr-at-end-of-file.yaml"] = (component("cr-at-eof").rstrip("\n") + "\r").encode()
FILES["bare-cr-between-keys.yaml"] = component("cr-between-keys").replace(
    "  lifecycle: production\n  owner: team-a\n", "  lifecycle: production\r  owner: team-a\n"
).encode()
FILES["bare-cr-in-crlf-file.yaml"] = (
    component("cr-in-crlf", meta="  description: one\rtwo\n").replace("\n", "\r\n").encode()
)

# --- tags -----------------------------------------------------------------------------------
FILES["tag-binary-annotation.yaml"] = component(
    "binary-annotation", meta="  annotations:\n    example.com/blob: !!binary aGVsbG8=\n"
).encode()
FILES["tag-binary-in-spec.yaml"] = component(
    "binary-in-spec", spec="  certificate: !!binary |\n    aGVsbG8g\n    d29ybGQ=\n"
).encode()
FILES["tag-unknown-local-on-scalars.yaml"] = (
    "apiVersion: backstage.io/v1alpha1\n"
    "kind: Component\n"
    "metadata:\n"
    "  name: !Ref local-tags\n"
    "  description: !Sub '${AWS::StackName} service'\n"
    "spec:\n"
    "  type: !foo service\n"
    "  lifecycle: ! production\n"
    "  owner: !GetAtt team-a\n"
).encode()
FILES["tag-unknown-local-on-collections.yaml"] = (
    "apiVersion: backstage.io/v1alpha1\n"
    "kind: Component\n"
    "metadata: !meta\n"
    "  name: local-tag-mapping\n"
    "  tags: !list [a, b]\n"
    "  annotations: !foo {example.com/x: y}\n"
    "spec: !spec\n"
    "  type: service\n"
    "  lifecycle: production\n"
    "  owner: team-a\n"
).encode()
FILES["tag-core-str-int.yaml"] = component(
    "!!str 12345",
    meta="  labels:\n    build: !!str 42\n    enabled: !!str true\n",
    spec="  replicas: !!int \"3\"\n  ratio: !!float '0.5'\n",
).encode()
FILES["tag-core-int-on-label.yaml"] = component(
    "int-label", meta="  labels:\n    build: !!int \"42\"\n"
).encode()
FILES["tag-core-int-not-a-number.yaml"] = component(
    "int-not-a-number", spec="  replicas: !!int three\n"
).encode()
FILES["tag-core-map-on-sequence.yaml"] = component(
    "map-on-sequence", meta="  tags: !!map [a, b]\n"
).encode()
FILES["tag-core-str-on-mapping.yaml"] = component(
    "str-on-mapping", spec="  extra: !!str {a: b}\n"
).encode()
FILES["tag-verbatim-and-null.yaml"] = component(
    "verbatim",
    meta="  description: !<tag:yaml.org,2002:str> 2024\n  title: !!null ''\n",
).encode()
FILES["tag-timestamp.yaml"] = component(
    "timestamp", meta="  description: !!timestamp 2001-12-14\n"
).encode()
FILES["tag-set-in-spec.yaml"] = component(
    "set-in-spec", spec="  flavours: !!set {a, b}\n  ordered: !!omap [{x: 1}, {y: 2}]\n"
).encode()
FILES["tag-undeclared-handle.yaml"] = component(
    "undeclared-handle", spec="  extra: !e!thing value\n"
).encode()

# --- directives -----------------------------------------------------------------------------
FILES["yaml-1-1-directive.yaml"] = component(
    "yaml-one-one", head="%YAML 1.1\n---\n", meta="  labels:\n    tier: backend\n"
).encode()
FILES["yaml-1-1-directive-booleans.yaml"] = component(
    "yaml-one-one-booleans", head="%YAML 1.1\n---\n", meta="  annotations:\n    example.com/enabled: yes\n"
).encode()
FILES["yaml-1-1-directive-timestamp.yaml"] = component(
    "yaml-one-one-timestamp", head="%YAML 1.1\n---\n", meta="  description: 2001-12-14\n"
).encode()
FILES["yaml-1-1-directive-numbers.yaml"] = component(
    "yaml-one-one-numbers",
    head="%YAML 1.1\n---\n",
    spec="  mode: 0755\n  big: 1_000\n  bits: 0b101\n  sexagesimal: 1:30\n  off: off\n",
).encode()
FILES["yaml-1-1-directive-carries-over.yaml"] = (
    component("first", head="%YAML 1.1\n---\n")
    + "---\n"
    + component("second", meta="  annotations:\n    example.com/enabled: on\n")
).encode()
FILES["yaml-1-1-merge-keys.yaml"] = (
    "%YAML 1.1\n"
    "---\n"
    "apiVersion: backstage.io/v1alpha1\n"
    "kind: Component\n"
    "metadata:\n"
    "  name: merged\n"
    "  labels: &labels {tier: backend}\n"
    "  annotations:\n"
    "    <<: *labels\n"
    "spec:\n"
    "  <<: [{owner: team-b, system: billing}, {system: other, type: website}]\n"
    "  lifecycle: experimental\n"
    "  type: library\n"
    "---\n"
    "apiVersion: backstage.io/v1alpha1\n"
    "kind: Component\n"
    "metadata:\n"
    "  name: merged-after-explicit-key\n"
    "spec:\n"
    "  owner: team-a\n"
    "  <<: {owner: team-c, type: service, lifecycle: production}\n"
).encode()
FILES["merge-key-without-directive.yaml"] = (
    "apiVersion: backstage.io/v1alpha1\n"
    "kind: Component\n"
    "metadata:\n"
    "  name: merge-key-plain\n"
    "  labels: &labels {tier: backend}\n"
    "spec:\n"
    "  <<: {owner: team-b}\n"
    "  type: service\n"
    "  lifecycle: production\n"
    "  owner: team-a\n"
).encode()
FILES["yaml-1-2-directive.yaml"] = component(
    "yaml-one-two", head="%YAML 1.2\n---\n", meta="  annotations:\n    example.com/enabled: yes\n"
).encode()
FILES["yaml-unsupported-version-directive.yaml"] = component(
    "yaml-one-three", head="%YAML 1.3\n---\n"
).encode()
FILES["yaml-tag-directive.yaml"] = component(
    "tag-directive", head="%TAG !e! tag:example.com,2000:app/\n---\n", spec="  extra: !e!thing value\n"
).encode()
# --- tab characters -------------------------------------------------------------------------
FILES["tab-in-plain-scalar.yaml"] = component(
    "tab-in-plain", meta="  description: left\tright\n"
).encode()
FILES["tab-as-separation.yaml"] = (
    "apiVersion:\tbackstage.io/v1alpha1\n"
    "kind: Component\n"
    "metadata:\n"
    "  name:\ttab-separation\t# tab before a comment\n"
    "  tags: [a,\tb]\n"
    "spec:\n"
    "  type: service\t\n"
    "  lifecycle: production\n"
    "  owner: team-a\n"
).encode()
FILES["tab-as-indentation.yaml"] = (
    "apiVersion: backstage.io/v1alpha1\n"
    "kind: Component\n"
    "metadata:\n"
    "\tname: tab-indent\n"
    "spec:\n"
    "  type: service\n"
    "  lifecycle: production\n"
    "  owner: team-a\n"
).encode()
FILES["tab-after-indentation.yaml"] = component(
    "tab-after-indent", spec="  links:\n    -\turl: https://example.com\n"
).encode()
FILES["tab-in-block-scalar.yaml"] = component(
    "tab-in-block", meta="  description: |\n    col1\tcol2\n    \tindented with a tab\n"
).encode()

# --- bytes that are not UTF-8 ---------------------------------------------------------------
FILES["non-utf8-in-string.yaml"] = component("latin1", meta="  description: caf\xe9 menu\n").encode(
    "latin-1"
)
FILES["non-utf8-in-name.yaml"] = component("caf\xe9").encode("latin-1")
FILES["non-utf8-in-comment.yaml"] = (
    component("comment-bytes").encode() + b"# trailing comment \xff\xfe\x80\n"
)
FILES["non-utf8-truncated-sequence.yaml"] = (
    component("truncated", meta="  description: euro sign cut short @@\n")
    .encode()
    .replace(b"@@", b"\xe2\x82")
)

# --- very deep flow nesting -----------------------------------------------------------------
# Upstream composes recursively and reports V8's "Maximum call stack size exceeded" as a YAML
# error; where that happens depends on the JavaScript stack (roughly 800 to 2,000 levels, and not
# the same from run to run), so these depths stay clear of it: see docs/compatibility.md.
for depth in (100, 200, 10000):
    FILES[f"deep-flow-nesting-{depth}.yaml"] = component(
        f"deep-seq-{depth}", spec="  nested: " + "[" * depth + "x" + "]" * depth + "\n"
    ).encode()
FILES["deep-flow-mapping-nesting-5000.yaml"] = component(
    "deep-map-5000", spec="  nested: " + "{a: " * 5000 + "x" + "}" * 5000 + "\n"
).encode()
FILES["deep-block-sequence-nesting-5000.yaml"] = component(
    "deep-block-seq", spec="  nested:\n    " + "- " * 5000 + "x\n"
).encode()

# --- string maps whose values are not strings -----------------------------------------------
FILES["annotation-mapping-value.yaml"] = (
    component("annotation-mapping", meta="  annotations: {x: {y: z}}\n")
    + "---\n"
    + component(
        "annotation-mapping-block", meta="  annotations:\n    example.com/config:\n      key: value\n"
    )
).encode()
FILES["label-mapping-value.yaml"] = component(
    "label-mapping", meta="  labels: {tier: {level: backend}}\n"
).encode()
FILES["string-map-scalar-values.yaml"] = "---\n".join(
    [
        component("annotation-number", meta="  annotations:\n    example.com/n: 3\n"),
        component("annotation-null", meta="  annotations:\n    example.com/n:\n"),
        component("annotation-sequence", meta="  annotations:\n    example.com/list: [a, b]\n"),
        component("label-boolean", meta="  labels:\n    public: true\n"),
        component("annotations-list", meta="  annotations: [a, b]\n"),
        component("tag-mapping-item", meta="  tags: [ok, {x: y}]\n"),
        component("quoted-values", meta="  annotations:\n    example.com/n: '3'\n  labels:\n    public: 'true'\n"),
    ]
).encode()


def main():
    for old in HERE.glob("*.yaml"):
        old.unlink()
    for name, data in sorted(FILES.items()):
        (HERE / name).write_bytes(data)
    print(f"wrote {len(FILES)} files")


if __name__ == "__main__":
    main()
