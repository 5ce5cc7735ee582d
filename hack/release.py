"""volprobe's release artifacts, built from this tree: `python hack/release.py [--registry R] STEP…`.

    check   the version agrees everywhere and CHANGELOG.md has its entry (every step checks first)
    python  sdist and wheel                                    -> dist/python/
    image   the image (Containerfile, OCI labels), OCI archive  -> dist/image/
    push    that archive                                       -> <registry>/volprobe:<version>
    chart   the chart, its image set to <registry>/volprobe     -> dist/chart/, oci://<registry>/charts
    krew    `kubectl volprobe` (a zipapp) and its krew manifest -> dist/krew/
    notes   this version's CHANGELOG.md entry                  -> dist/release-notes.md
    all     every step above, in that order (`make release`)
    lint    versions, the krew manifest (krew's validator), the workflows (actionlint)

The version has one source, `project.version` in pyproject.toml; `volprobe.__version__`, the
chart's version and appVersion, and CHANGELOG.md are checked against it, never written. The
registry defaults to the local cluster's (plain HTTP on loopback); any other is used over HTTPS
with the credentials of `skopeo login` and `helm registry login`. See docs/release.md.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipapp
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from localcluster import build, images, registry
from localcluster.config import Layout, read_versions

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = REPO / "pyproject.toml"
PACKAGE_INIT = REPO / "src" / "volprobe" / "__init__.py"
CHART = REPO / "charts" / "volprobe"
CHANGELOG = REPO / "CHANGELOG.md"
KREW_TEMPLATE = REPO / "krew" / "volprobe.yaml"
LICENSE = REPO / "LICENSE"
IMAGE_NAME = "volprobe"
CHART_REPOSITORY = "charts"
"""Charts live beside the image: `oci://<registry>/charts/volprobe`."""
PLUGIN_BINARY = "kubectl-volprobe"
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class Project:
    """What pyproject.toml says about the release: the one source of these facts."""

    name: str
    version: str
    source: str
    licenses: str
    description: str

    @classmethod
    def read(cls, path: Path = PYPROJECT) -> Project:
        project = tomllib.loads(path.read_text())["project"]
        return cls(
            name=project["name"],
            version=project["version"],
            source=project["urls"]["Source"],
            licenses=project["license"],
            description=project["description"],
        )


def revision() -> str:
    """The commit the artifacts are built from (`$REVISION` wins: CI names the tag's commit)."""
    if os.environ.get("REVISION"):
        return os.environ["REVISION"]
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def image_ref(registry_prefix: str, version: str) -> str:
    return f"{registry_prefix}/{IMAGE_NAME}:{version}"


def chart_ref(registry_prefix: str) -> str:
    return f"oci://{registry_prefix}/{CHART_REPOSITORY}/{IMAGE_NAME}"


def plain_http(reference: str) -> bool:
    """Loopback registries speak plain HTTP (containerd assumes the same); others need TLS."""
    host = reference.split("/", 1)[0]
    host = host.partition("]")[0] + "]" if host.startswith("[") else host.partition(":")[0]
    return host in LOOPBACK


def labels(project: Project, commit: str) -> dict[str, str]:
    """The image's OCI labels that vary by release (the Containerfile declares each as an ARG of
    the same name in upper case, for builds by hand)."""
    return {
        f"org.opencontainers.image.{key}": value
        for key, value in (
            ("version", project.version),
            ("revision", commit),
            ("source", project.source),
            ("licenses", project.licenses),
        )
    }


# --- one version everywhere ----------------------------------------------------------------


def package_version(path: Path = PACKAGE_INIT) -> str:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            assert isinstance(node.value, ast.Constant)
            return str(node.value.value)
    raise ValueError(f"{path} sets no __version__")


def changelog_versions(text: str) -> list[str]:
    """Versions with an entry, newest first: `## [0.1.0] - 2026-12-02` headings."""
    return re.findall(r"^## \[(\d+\.\d+\.\d+[^\]]*)\] - \d{4}-\d{2}-\d{2}$", text, re.MULTILINE)


def changelog_entry(text: str, version: str) -> str:
    """The body of `version`'s entry: the GitHub release's notes."""
    found = re.search(
        rf"^## \[{re.escape(version)}\][^\n]*\n(.*?)(?=^## \[|\Z)", text, re.MULTILINE | re.DOTALL
    )
    if not found:
        raise ValueError(f"CHANGELOG.md has no entry for {version}")
    return found.group(1).strip() + "\n"


def version_problems(project: Project) -> list[str]:
    """Where the version disagrees with pyproject.toml's; empty when releasable."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    found = {
        "src/volprobe/__init__.py __version__": package_version(),
        "charts/volprobe/Chart.yaml version": str(chart["version"]),
        "charts/volprobe/Chart.yaml appVersion": str(chart["appVersion"]),
    }
    problems = [f"{where} is {value}" for where, value in found.items() if value != project.version]
    entries = changelog_versions(CHANGELOG.read_text())
    if not entries or entries[0] != project.version:
        problems.append(f"CHANGELOG.md's newest entry is {entries[0] if entries else 'missing'}")
    return [f"{problem}, not {project.version} (pyproject.toml)" for problem in problems]


# --- the chart -------------------------------------------------------------------------------


def stamp_values(text: str, repository: str) -> str:
    """values.yaml with `image.repository` set, comments and layout kept.

    `helm package` cannot override values, and a chart pulled from a registry must name the image
    pushed beside it, or `helm install oci://…` would pull an image that was never published.
    """
    stamped, count = re.subn(
        r"^(image:\n(?:[ \t]+.*\n|[ \t]*\n)*?[ \t]+repository:[ \t]*)\S+",
        lambda match: match.group(1) + repository,
        text,
        count=1,
        flags=re.MULTILINE,
    )
    before, after = yaml.safe_load(text), yaml.safe_load(stamped)
    if count != 1 or after["image"]["repository"] != repository:
        raise ValueError("values.yaml: no image.repository to set")
    before["image"]["repository"] = repository
    if before != after:
        raise ValueError("values.yaml: setting image.repository changed other values")
    return stamped


# --- tools -----------------------------------------------------------------------------------


def run(*argv: str | Path, cwd: Path = REPO, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in argv], cwd=cwd, input=stdin, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"release: {' '.join(map(str, argv))} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


GO_TOOLS = {
    "helm": ("helm.sh/helm/v3/cmd/helm", "HELM_VERSION"),
    "actionlint": ("github.com/rhysd/actionlint/cmd/actionlint", "ACTIONLINT_VERSION"),
    "krew": ("sigs.k8s.io/krew/cmd/krew", "KREW_VERSION"),
    "validate-krew-manifest": ("sigs.k8s.io/krew/cmd/validate-krew-manifest", "KREW_VERSION"),
}
"""Go programs the release and its checks run: built from the Go module proxy once per pinned
version (hack/versions.env) into the cache the local cluster's binaries use."""


def go_tool(layout: Layout, name: str) -> Path:
    package, pin = GO_TOOLS[name]
    version = read_versions()[pin]
    return build.go_install(layout, name, package, version, layout.cache / "build.log") / name


def helm(layout: Layout) -> Path:
    return go_tool(layout, "helm")


@contextmanager
def step(name: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    print(f"release: {name} done in {time.monotonic() - started:.1f}s", file=sys.stderr)


# --- the steps ---------------------------------------------------------------------------------


def build_python(project: Project, dist: Path) -> list[Path]:
    out = dist / "python"
    shutil.rmtree(out, ignore_errors=True)
    run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", out, REPO)
    built = sorted(out.iterdir())
    names = {p.name for p in built}
    expected = {
        f"{project.name}-{project.version}.tar.gz",
        f"{project.name}-{project.version}-py3-none-any.whl",
    }
    if names != expected:
        raise SystemExit(f"release: python -m build made {sorted(names)}, expected {sorted(expected)}")
    return built


def wheel(project: Project, dist: Path) -> Path:
    path = dist / "python" / f"{project.name}-{project.version}-py3-none-any.whl"
    return path if path.exists() else next(p for p in build_python(project, dist) if p.suffix == ".whl")


def build_image(layout: Layout, project: Project, registry_prefix: str, dist: Path, commit: str) -> Path:
    """The image as an OCI archive under dist/image (built by buildah on the local base image)."""
    ref = image_ref(registry_prefix, project.version)
    cached = images.release_image(layout, ref, REPO, labels(project, commit))
    out = dist / "image" / f"{IMAGE_NAME}-{project.version}.oci.tar"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    shutil.copyfile(cached, out)
    return out


def image_archive(project: Project, dist: Path) -> Path:
    path = dist / "image" / f"{IMAGE_NAME}-{project.version}.oci.tar"
    if not path.exists():
        raise SystemExit(f"release: {path} does not exist; run `make image` first")
    return path


def push_image(archive: Path, ref: str) -> str:
    """Copy the archive to the registry; returns the pushed manifest's digest."""
    tls = "false" if plain_http(ref) else "true"
    with tempfile.TemporaryDirectory() as scratch:
        digest_file = Path(scratch) / "digest"
        run(
            "skopeo",
            "copy",
            "--quiet",
            f"--dest-tls-verify={tls}",
            "--digestfile",
            digest_file,
            f"oci-archive:{archive}",
            f"docker://{ref}",
        )
        return digest_file.read_text().strip()


def package_chart(helm_binary: Path, project: Project, registry_prefix: str, dist: Path) -> Path:
    out = dist / "chart"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as scratch:
        staged = Path(scratch) / CHART.name
        shutil.copytree(CHART, staged)
        values = staged / "values.yaml"
        values.write_text(stamp_values(values.read_text(), f"{registry_prefix}/{IMAGE_NAME}"))
        run(helm_binary, "lint", "--strict", staged)
        run(helm_binary, "package", staged, "--destination", out)
    package = out / f"{CHART.name}-{project.version}.tgz"
    if not package.exists():
        raise SystemExit(f"release: helm package did not make {package}")
    return package


def push_chart(helm_binary: Path, package: Path, registry_prefix: str) -> str:
    """`helm push` to oci://<registry>/charts; returns the chart manifest's digest."""
    flags = ["--plain-http"] if plain_http(registry_prefix) else []
    target = f"oci://{registry_prefix}/{CHART_REPOSITORY}"
    # helm prints the result on stderr; run() hands back stdout only.
    result = subprocess.run(
        [str(helm_binary), "push", str(package), target, *flags], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"release: helm push {package.name} {target} failed:\n{result.stderr}")
    found = re.search(r"^Digest: (sha256:[0-9a-f]{64})$", result.stdout + result.stderr, re.MULTILINE)
    if not found:
        raise SystemExit(f"release: helm push printed no digest:\n{result.stdout}{result.stderr}")
    return found.group(1)


# --- krew --------------------------------------------------------------------------------------

KREW_API_VERSION = "krew.googlecontainertools.github.com/v1alpha2"
KREW_SELECTOR_KEYS = ("os", "arch")
KREW_PLATFORMS = tuple(
    (os_name, arch)
    for os_name, arches in (
        ("linux", ("386", "amd64", "arm", "arm64", "ppc64le")),
        ("darwin", ("386", "amd64", "arm64")),
        ("windows", ("386", "amd64", "arm64")),
    )
    for arch in arches
)
"""The <os, arch> pairs krew installs on (its manifest validator's list)."""
KREW_LICENSE_FILES = ("license", "license.txt", "license.md", "licenses", "copying", "copying.txt")
SEMVER = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def krew_archive_name(version: str) -> str:
    return f"{PLUGIN_BINARY}-v{version}.tar.gz"


def krew_uri(project: Project) -> str:
    """Where CI publishes the plugin archive: an asset of the tag's GitHub release."""
    return f"{project.source}/releases/download/v{project.version}/{krew_archive_name(project.version)}"


def render_krew_manifest(template: str, project: Project, sha256: str) -> str:
    values = {"@VERSION@": f"v{project.version}", "@URI@": krew_uri(project), "@SHA256@": sha256}
    for placeholder, value in values.items():
        if placeholder not in template:
            raise ValueError(f"krew template lacks {placeholder}")
        template = template.replace(placeholder, value)
    return template


def _selector_matches(selector: Mapping[str, Any], os_name: str, arch: str) -> bool:
    labels_ = {"os": os_name, "arch": arch}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels_.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        present = labels_.get(expression.get("key", ""))
        operator, values = expression.get("operator"), expression.get("values") or []
        if (
            (operator == "In" and present not in values)
            or (operator == "NotIn" and present in values)
            or (operator == "Exists" and present is None)
            or (operator == "DoesNotExist" and present is not None)
        ):
            return False
    return True


def _platform_problems(platform: Mapping[str, Any]) -> list[str]:
    problems = []
    if not platform.get("uri"):
        problems.append("`uri` has to be set")
    if not re.fullmatch(r"[a-f0-9]{64}", str(platform.get("sha256", ""))):
        problems.append("`sha256` must be 64 lowercase hex digits")
    if not platform.get("bin"):
        problems.append("`bin` has to be set")
    files = platform.get("files")
    if files is not None and (not files or any(not f.get("from") or not f.get("to") for f in files)):
        problems.append("`files` must be absent or a list of entries with `from` and `to`")
    selector = platform.get("selector")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        problems.append("a platform needs a non-empty `selector`")
    else:
        keys = [
            *(selector.get("matchLabels") or {}),
            *(e.get("key") for e in selector.get("matchExpressions") or []),
        ]
        problems += [
            f"selector key {key!r} is not os or arch" for key in keys if key not in KREW_SELECTOR_KEYS
        ]
        if not any(_selector_matches(selector, *pair) for pair in KREW_PLATFORMS):
            problems.append("its selector matches no platform krew supports")
    return problems


def krew_manifest_problems(manifest: Mapping[str, Any], file_name: str) -> list[str]:
    """What krew's own validator (validate-krew-manifest) would reject, as far as it is knowable
    without installing: kind and apiVersion, the name (from the file name), a one-line short
    description, a `v`-prefixed semantic version, and per platform a uri, a sha256, a bin, valid
    `files` and a selector on os/arch only that matches a supported platform and no other
    platform's."""
    problems = []
    name = file_name.removesuffix(".yaml")
    if not file_name.endswith(".yaml"):
        problems.append("the manifest's file name must end in .yaml")
    if manifest.get("apiVersion") != KREW_API_VERSION:
        problems.append(f"apiVersion must be {KREW_API_VERSION}")
    if manifest.get("kind") != "Plugin":
        problems.append("kind must be Plugin")
    if not re.fullmatch(r"[\w-]+", name):
        problems.append(f"plugin name {name!r} is not allowed")
    if (manifest.get("metadata") or {}).get("name") != name:
        problems.append(f"metadata.name must be {name!r}, the file's name")
    spec = manifest.get("spec") or {}
    short = spec.get("shortDescription") or ""
    if not short or "\n" in short or "\r" in short:
        problems.append("spec.shortDescription must be one non-empty line")
    if not SEMVER.fullmatch(str(spec.get("version", ""))):
        problems.append("spec.version must be a semantic version with a leading v")
    platforms = spec.get("platforms") or []
    if not platforms:
        problems.append("spec.platforms must not be empty")
    for index, platform in enumerate(platforms):
        problems += [f"spec.platforms[{index}]: {p}" for p in _platform_problems(platform)]
    for pair in KREW_PLATFORMS:
        matching = [i for i, p in enumerate(platforms) if _selector_matches(p.get("selector") or {}, *pair)]
        if len(matching) > 1:
            problems.append(f"spec.platforms {matching} overlap on {'/'.join(pair)}")
    return problems


def _tar_add(archive: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    archive.addfile(info, io.BytesIO(data))


def build_zipapp(wheel_file: Path, out: Path) -> None:
    """`kubectl-volprobe`: the wheel and its dependencies in one executable zip (PEP 441).

    krew installs files, not Python packages: the zip runs with any python3 >= 3.11 on PATH.
    Compiled modules cannot be imported from a zip, so they are left out; PyYAML, the only
    dependency that has one, falls back to its pure-Python parser.
    """
    with tempfile.TemporaryDirectory() as scratch:
        app = Path(scratch) / "app"
        run(
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
            "--target", app, wheel_file,
        )  # fmt: skip
        for path in sorted(app.rglob("*"), reverse=True):
            if path.suffix == ".so" or path.name in {"bin", "__pycache__"}:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        (app / "__main__.py").write_text("import sys\n\nfrom volprobe.cli import main\n\nsys.exit(main())\n")
        zipapp.create_archive(app, out, interpreter="/usr/bin/env python3", compressed=True)


def build_krew(project: Project, dist: Path) -> tuple[Path, Path]:
    """The plugin's archive (zipapp + LICENSE) and its manifest, named as krew-index wants."""
    out = dist / "krew"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as scratch:
        binary = Path(scratch) / PLUGIN_BINARY
        build_zipapp(wheel(project, dist), binary)
        archive = out / krew_archive_name(project.version)
        with tarfile.open(archive, "w:gz") as tar:
            _tar_add(tar, PLUGIN_BINARY, binary.read_bytes(), 0o755)
            _tar_add(tar, LICENSE.name, LICENSE.read_bytes(), 0o644)
    sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
    manifest = out / KREW_TEMPLATE.name
    manifest.write_text(render_krew_manifest(KREW_TEMPLATE.read_text(), project, sha256))
    problems = krew_manifest_problems(yaml.safe_load(manifest.read_text()), manifest.name)
    if problems:
        raise SystemExit("release: the krew manifest is invalid:\n  " + "\n  ".join(problems))
    return archive, manifest


def lint_krew(project: Project, validator: Path | None) -> list[str]:
    """The template rendered as a release would render it, checked here and by krew's validator."""
    with tempfile.TemporaryDirectory() as scratch:
        manifest = Path(scratch) / KREW_TEMPLATE.name
        manifest.write_text(render_krew_manifest(KREW_TEMPLATE.read_text(), project, "0" * 64))
        problems = krew_manifest_problems(yaml.safe_load(manifest.read_text()), manifest.name)
        if validator is not None and not problems:
            result = subprocess.run(
                [str(validator), "-skip-install", "-manifest", str(manifest)],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                problems.append(f"validate-krew-manifest: {result.stderr.strip()}")
    return problems


def login(layout: Layout, registry_prefix: str) -> str:
    """Log skopeo and helm in to the registry's host with $REGISTRY_USERNAME / $REGISTRY_PASSWORD.

    Two logins because each keeps its own credentials file; the password goes on stdin only.
    """
    host = registry_prefix.split("/", 1)[0]
    username, password = os.environ["REGISTRY_USERNAME"], os.environ["REGISTRY_PASSWORD"]
    run("skopeo", "login", "--username", username, "--password-stdin", host, stdin=password)
    run(helm(layout), "registry", "login", host, "--username", username, "--password-stdin", stdin=password)
    return f"skopeo and helm logged in to {host} as {username}"


def write_notes(project: Project, dist: Path) -> Path:
    out = dist / "release-notes.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    notes = changelog_entry(CHANGELOG.read_text(), project.version)
    # The release page is not in the tree: point relative links at the tag's files.
    notes = re.sub(r"\]\((?![a-z]+:)", f"]({project.source}/blob/v{project.version}/", notes)
    out.write_text(notes)
    return out


def lint(layout: Layout, project: Project) -> list[str]:
    """`make lint`'s part: versions agree, the krew manifest is valid, the workflows are clean.

    actionlint type-checks the workflows' expressions, contexts and action inputs and runs
    shellcheck on their scripts: the workflows cannot run here, so this is how they are tested.
    """
    problems = version_problems(project)
    problems += [
        f"krew/volprobe.yaml: {p}" for p in lint_krew(project, go_tool(layout, "validate-krew-manifest"))
    ]
    result = subprocess.run(
        [str(go_tool(layout, "actionlint")), "-no-color"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        problems.append(f"actionlint:\n{result.stdout}{result.stderr}")
    return problems


# --- command line --------------------------------------------------------------------------------

STEPS = ("check", "python", "image", "push", "chart", "krew", "notes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="release", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--registry",
        default=os.environ.get("REGISTRY") or registry.ADDRESS,
        help="where images and charts go: host[:port][/path] (default: the local cluster's, %(default)s)",
    )
    parser.add_argument("--dist", type=Path, default=REPO / "dist")
    parser.add_argument("steps", nargs="+", choices=(*STEPS, "all", "version", "lint", "login"))
    args = parser.parse_args(argv)
    project = Project.read()
    if args.steps == ["version"]:
        print(project.version)
        return 0
    if args.steps == ["login"]:
        print(login(Layout.default(), args.registry))
        return 0
    if args.steps == ["lint"]:
        problems = lint(Layout.default(), project)
        print("\n".join(problems), file=sys.stderr, end="\n" if problems else "")
        return 1 if problems else 0
    problems = version_problems(project)
    if problems:
        print("release: the version disagrees:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    steps = STEPS if "all" in args.steps else tuple(s for s in STEPS if s in args.steps)
    local = args.registry.split("/", 1)[0] == registry.ADDRESS
    if local and {"push", "chart"} & set(steps) and not registry.serving():
        print(
            f"release: nothing serves {registry.URL}, the local cluster's registry: run `make cluster`, "
            "or give REGISTRY=…",
            file=sys.stderr,
        )
        return 1
    layout = Layout.default()
    dist: Path = args.dist
    ref = image_ref(args.registry, project.version)

    def chart() -> str:
        package = package_chart(helm(layout), project, args.registry, dist)
        digest = push_chart(helm(layout), package, args.registry)
        return f"{package} -> {chart_ref(args.registry)}:{project.version}@{digest}"

    actions: dict[str, Callable[[], str]] = {
        "check": lambda: f"version {project.version} everywhere",
        "python": lambda: ", ".join(str(p) for p in build_python(project, dist)),
        "image": lambda: f"{build_image(layout, project, args.registry, dist, revision())} ({ref})",
        "push": lambda: f"{ref}@{push_image(image_archive(project, dist), ref)}",
        "chart": chart,
        "krew": lambda: ", ".join(str(p) for p in build_krew(project, dist)),
        "notes": lambda: str(write_notes(project, dist)),
    }
    for name in steps:
        with step(name):
            print(f"{name}: {actions[name]()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
