"""The release's facts agree (one version, one image, one set of labels) and its pure pieces work:
stamping the chart's image, the changelog, and a krew manifest validator that catches what
krew's own validator (sigs.k8s.io/krew, internal/index/validation and validate-krew-manifest)
rejects. The artifacts themselves are built and used in tests/e2e/test_release.py."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import yaml

import release
from localcluster import registry
from volprobe import __version__
from volprobe.model.manifests import DEFAULT_AGENT_IMAGE

PROJECT = release.Project.read()


def test_the_version_comes_from_pyproject_and_agrees_everywhere() -> None:
    chart = yaml.safe_load((release.CHART / "Chart.yaml").read_text())
    assert __version__ == PROJECT.version
    assert str(chart["version"]) == str(chart["appVersion"]) == PROJECT.version
    assert release.changelog_versions(release.CHANGELOG.read_text())[0] == PROJECT.version
    assert release.version_problems(PROJECT) == []


def test_a_version_bumped_in_one_place_only_is_caught() -> None:
    problems = release.version_problems(replace(PROJECT, version="9.9.9"))
    assert len(problems) == 4, problems
    assert all(p.endswith("not 9.9.9 (pyproject.toml)") for p in problems)
    assert any(p.startswith("CHANGELOG.md") for p in problems)


def test_the_chart_and_the_cli_default_to_the_same_image() -> None:
    values = yaml.safe_load((release.CHART / "values.yaml").read_text())
    chart = yaml.safe_load((release.CHART / "Chart.yaml").read_text())
    assert f"{values['image']['repository']}:{chart['appVersion']}" == DEFAULT_AGENT_IMAGE
    assert values["image"]["pullPolicy"] == values["probeImage"]["pullPolicy"] == "IfNotPresent"
    registry_prefix = values["image"]["repository"].rsplit("/", 1)[0]
    assert release.image_ref(registry_prefix, PROJECT.version) == DEFAULT_AGENT_IMAGE


def test_the_containerfile_labels_what_the_release_passes() -> None:
    text = (release.REPO / "Containerfile").read_text()
    arguments = {
        name for line in re.findall(r"^ARG (.+)$", text, re.MULTILINE) for name in re.findall(r"(\w+)=", line)
    }
    passed = release.labels(PROJECT, "0" * 40)
    keys = [label.removeprefix("org.opencontainers.image.") for label in passed]
    assert arguments - {"BASE_IMAGE"} == {key.upper() for key in keys}
    for key in keys:
        assert f'org.opencontainers.image.{key}="${{{key.upper()}}}"' in text
    assert passed["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert passed["org.opencontainers.image.source"] == "https://github.com/volprobe/volprobe"
    assert passed["org.opencontainers.image.revision"] == "0" * 40


def test_loopback_registries_are_plain_http_and_others_tls() -> None:
    assert release.plain_http(registry.ADDRESS)
    assert release.plain_http("127.0.0.1:5001/e2e/volprobe:0.1.0")
    assert release.plain_http("localhost:5000")
    assert release.plain_http("[::1]:5000/x")
    assert not release.plain_http("ghcr.io/volprobe")
    assert not release.plain_http("registry.example.com:5000/storage")
    assert not release.plain_http("127.0.0.1.example.com/x")


def test_images_and_charts_are_named_beside_each_other() -> None:
    assert release.image_ref("ghcr.io/acme", "1.2.3") == "ghcr.io/acme/volprobe:1.2.3"
    assert release.chart_ref("ghcr.io/acme") == "oci://ghcr.io/acme/charts/volprobe"


def test_stamping_sets_only_the_image_repository_and_keeps_comments() -> None:
    text = (release.CHART / "values.yaml").read_text()
    stamped = release.stamp_values(text, "registry.example.com/storage/volprobe")
    before, after = yaml.safe_load(text), yaml.safe_load(stamped)
    assert after["image"]["repository"] == "registry.example.com/storage/volprobe"
    assert after["probeImage"] == before["probeImage"]
    before["image"]["repository"] = after["image"]["repository"]
    assert before == after
    changed = [(a, b) for a, b in zip(text.splitlines(), stamped.splitlines(), strict=True) if a != b]
    assert changed == [
        ("  repository: ghcr.io/volprobe/volprobe", "  repository: registry.example.com/storage/volprobe")
    ]


def test_stamping_refuses_values_without_an_image_repository() -> None:
    with pytest.raises(ValueError, match=r"no image\.repository"):
        release.stamp_values("probeImage:\n  repository: x\n", "y")


def test_the_changelog_entry_is_the_release_notes() -> None:
    text = "# Changelog\n\n## [0.2.0] - 2027-01-02\n\n- new\n\n## [0.1.0] - 2026-12-02\n\n- old\n"
    assert release.changelog_versions(text) == ["0.2.0", "0.1.0"]
    assert release.changelog_entry(text, "0.2.0") == "- new\n"
    assert release.changelog_entry(text, "0.1.0") == "- old\n"
    with pytest.raises(ValueError, match=r"no entry for 0\.3\.0"):
        release.changelog_entry(text, "0.3.0")


# --- krew ------------------------------------------------------------------------------------


def rendered() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(
        release.render_krew_manifest(release.KREW_TEMPLATE.read_text(), PROJECT, "a" * 64)
    )
    return manifest


def test_the_krew_manifest_renders_valid() -> None:
    manifest = rendered()
    assert release.krew_manifest_problems(manifest, "volprobe.yaml") == []
    assert manifest["spec"]["version"] == f"v{PROJECT.version}"
    platform = manifest["spec"]["platforms"][0]
    assert platform["uri"] == (
        f"https://github.com/volprobe/volprobe/releases/download/v{PROJECT.version}/"
        f"kubectl-volprobe-v{PROJECT.version}.tar.gz"
    )
    assert platform["bin"] == release.PLUGIN_BINARY
    assert {f["from"] for f in platform["files"]} == {release.PLUGIN_BINARY, release.LICENSE.name}
    assert release.LICENSE.name.lower() in release.KREW_LICENSE_FILES


def test_the_krew_template_has_every_placeholder() -> None:
    with pytest.raises(ValueError, match="@SHA256@"):
        release.render_krew_manifest("spec: {version: '@VERSION@', uri: '@URI@'}", PROJECT, "a" * 64)


def platform(manifest: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = manifest["spec"]["platforms"][0]
    return first


def second_platform(manifest: dict[str, Any], os_values: list[str]) -> None:
    extra = copy.deepcopy(platform(manifest))
    extra["selector"] = {"matchExpressions": [{"key": "os", "operator": "In", "values": os_values}]}
    manifest["spec"]["platforms"].append(extra)


Breaker = Callable[[dict[str, Any]], object]
BROKEN: dict[str, tuple[Breaker, str]] = {
    "apiVersion": (
        lambda m: m.update(apiVersion="krew.googlecontainertools.github.com/v1alpha1"),
        "apiVersion",
    ),
    "kind": (lambda m: m.update(kind="Plugins"), "kind must be Plugin"),
    "name": (lambda m: m["metadata"].update(name="vol-probe"), "metadata.name"),
    "short description missing": (lambda m: m["spec"].pop("shortDescription"), "shortDescription"),
    "short description on two lines": (
        lambda m: m["spec"].update(shortDescription="one\ntwo"),
        "shortDescription",
    ),
    "version without v": (lambda m: m["spec"].update(version=PROJECT.version), "spec.version"),
    "version not semver": (lambda m: m["spec"].update(version="v1.2"), "spec.version"),
    "no platforms": (lambda m: m["spec"].update(platforms=[]), "spec.platforms must not be empty"),
    "no uri": (lambda m: platform(m).pop("uri"), "`uri`"),
    "sha256 upper case": (lambda m: platform(m).update(sha256="A" * 64), "`sha256`"),
    "sha256 short": (lambda m: platform(m).update(sha256="a" * 63), "`sha256`"),
    "no bin": (lambda m: platform(m).pop("bin"), "`bin`"),
    "files empty": (lambda m: platform(m).update(files=[]), "`files`"),
    "files without to": (lambda m: platform(m).update(files=[{"from": "x"}]), "`files`"),
    "no selector": (lambda m: platform(m).pop("selector"), "selector"),
    "empty selector": (lambda m: platform(m).update(selector={"matchLabels": {}}), "selector"),
    "selector key": (
        lambda m: platform(m).update(selector={"matchLabels": {"os": "linux", "distro": "debian"}}),
        "'distro' is not os or arch",
    ),
    "selector matches nothing": (
        lambda m: platform(m).update(selector={"matchLabels": {"os": "plan9"}}),
        "matches no platform",
    ),
    "platforms overlap": (lambda m: second_platform(m, ["linux"]), "overlap on linux/amd64"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_krew_validator_catches(case: str) -> None:
    manifest = rendered()
    break_it, expected = BROKEN[case]
    break_it(manifest)
    problems = release.krew_manifest_problems(manifest, "volprobe.yaml")
    assert any(expected in p for p in problems), problems


def test_the_krew_manifest_is_named_after_its_file() -> None:
    assert any("metadata.name" in p for p in release.krew_manifest_problems(rendered(), "other.yaml"))
    assert any("end in .yaml" in p for p in release.krew_manifest_problems(rendered(), "volprobe.yml"))


def test_a_windows_platform_beside_linux_and_darwin_does_not_overlap() -> None:
    manifest = rendered()
    second_platform(manifest, ["windows"])
    assert release.krew_manifest_problems(manifest, "volprobe.yaml") == []
