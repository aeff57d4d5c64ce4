"""Embedder protocol and the sentence-transformers implementation (packaged model, offline).

By default the transformer is exported once to ONNX, its matrix weights quantised to int8, and everything runs on
onnxruntime: faster than torch for single queries and for ingest batches on these 2 cores, with the same dev-set
retrieval (bench/encoder.py, eval). With the fp32 export (backend "onnx") ingest-sized batches run through torch,
which is faster than fp32 onnxruntime on long chunks and is only loaded when such a batch comes.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from qa_service.config import DEFAULT_MODEL_CACHE, Settings, offline_environment, usable_cores
from qa_service.models import resolve_embedder

_ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class Embedder(Protocol):
    dim: int
    identity: str
    """What makes the vectors: the model, its weights' number format and the dimension. A store records the identity
    of the encoder that wrote it, and opening it with another one embeds its chunks again (vectors of two encoders do
    not compare)."""

    def embed(self, texts: list[str], *, batch_size: int | None = None) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def embed_cached(self, texts: list[str]) -> np.ndarray: ...


def onnx_path(model: str, cache_dir: Path | None, *, int8: bool = False) -> Path:
    """The cached export; the int8 file's name says its weights are 7-bit (`quantize_onnx`), so a cache holding the
    8-bit file an older version made is not mistaken for it."""
    return (cache_dir or DEFAULT_MODEL_CACHE) / "onnx" / f"{Path(model).name}{'.int8r7' if int8 else ''}.onnx"


class _LRU:
    """A thread-safe least-recently-used map of text -> vector."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: np.ndarray) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _load_sentence_transformer(model: str, device: str) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model, device=device)


def export_onnx(st_model: Any, path: Path) -> Path:
    """Export the model's transformer (its output before pooling) to ONNX; needs torch and the onnx package."""
    import torch

    sample = st_model.tokenizer(["an example sentence", "two"], padding=True, return_tensors="pt")
    inputs = [name for name in _ONNX_INPUTS if name in sample]  # RoBERTa-style models have no token_type_ids

    class LastHidden(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *tensors: Any) -> Any:
            return self.inner(**dict(zip(inputs, tensors, strict=True))).last_hidden_state

    axes = {name: {0: "batch", 1: "tokens"} for name in (*inputs, "last_hidden_state")}

    def write(tmp: str) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes it fixes; the axes above stay dynamic
            torch.onnx.export(
                LastHidden(st_model[0].auto_model.eval()),
                tuple(sample[name] for name in inputs),
                tmp,
                input_names=inputs,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )

    return _write_model(path, write)


def quantize_onnx(fp32: Path, path: Path, *, reduce_range: bool = True) -> Path:
    """int8 weights for the matrix products, one scale per output channel (per-tensor scales moved vectors
    visibly: mean cosine 0.95 against fp32, per-channel 0.99); activations are quantised at run time.
    `reduce_range` keeps the weights to 7 bits, as the reader's are: a u8 x s7 pair sum cannot saturate the 16-bit
    accumulators of CPUs without VNNI, so the integer products, and the vectors, are the same on every x86 CPU. It
    costs no measurable retrieval (bench/encoder_quant.py)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    return _write_model(
        path,
        lambda tmp: quantize_dynamic(
            str(fp32), tmp, weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range, op_types_to_quantize=["MatMul"]
        ),
    )


def _write_model(path: Path, write: Callable[[str], None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        write(tmp)
    except BaseException:
        os.unlink(tmp)
        raise
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the model from other users of a shared cache
    os.replace(tmp, path)  # never leave a half-written model where the next start would load it
    return path


def onnx_compatible(model_dir: Path) -> bool:
    """A local sentence-transformers folder whose pipeline is transformer -> mean pooling (-> normalise): the
    pipeline the ONNX path re-implements. Anything else (CLS pooling, dense layers) keeps torch."""
    try:
        modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((model_dir / "modules.json").read_text())]
        pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return False
    mean = pooling.get("pooling_mode_mean_tokens") is True or pooling.get("pooling_mode") == "mean"
    others = ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens")
    return (
        modules in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"])
        and mean
        and not any(pooling.get(k) for k in others)
        and (model_dir / "tokenizer.json").is_file()
    )


class _OnnxTransformer:
    """The exported transformer plus mean pooling and normalisation, with the model's own fast tokenizer: neither
    torch nor sentence-transformers is imported, which keeps ~330 MB out of a server that only answers."""

    def __init__(self, path: Path, model_dir: Path, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        try:
            max_length = int(json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"])
        except (OSError, ValueError, KeyError):
            max_length = 256
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=max_length)
        self._tokenizer.no_padding()
        # one thread per run, and up to `threads` runs on separate batches at once: the small matrices of a batch of
        # a few chunks split badly across cores (1,042 corpus chunks: 96 vs 76 chunks/s with one 2-thread run at a
        # time, identical vectors); a single query takes the same ~2.5 ms either way
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self._threads = threads or usable_cores()
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        self.dim = int(self._session.get_outputs()[0].shape[-1])

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths batch with little padding
        batches = [order[i : i + batch_size] for i in range(0, len(texts), batch_size)]

        def run(idx: list[int]) -> None:
            encs = self._tokenizer.encode_batch([texts[j] for j in idx])
            width = max(len(e.ids) for e in encs)
            feed = {name: np.zeros((len(encs), width), dtype=np.int64) for name in _ONNX_INPUTS}
            for row, e in enumerate(encs):
                n = len(e.ids)
                feed["input_ids"][row, :n] = e.ids
                feed["attention_mask"][row, :n] = e.attention_mask
                feed["token_type_ids"][row, :n] = e.type_ids
            hidden = self._session.run(None, {name: feed[name] for name in self._inputs})[0]
            mask = feed["attention_mask"][..., None].astype(np.float32)
            vecs = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            out[idx] = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)

        if len(batches) == 1 or self._threads == 1:
            for idx in batches:
                run(idx)
        else:  # onnxruntime releases the GIL while it runs, so the batches proceed in parallel
            with ThreadPoolExecutor(min(self._threads, len(batches))) as pool:
                list(pool.map(run, batches))
        return out


class SentenceTransformerEmbedder:
    """Normalised embeddings, so cosine similarity is a dot product; query and passage-sentence vectors are LRU-cached."""

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 1,
        device: str = "cpu",
        backend: Literal["onnx", "onnx-int8", "torch"] = "onnx-int8",
        cache_dir: Path | None = None,
        threads: int = 0,
        bulk_threshold: int = 0,
        cache_size: int = 2048,
        sentence_cache_size: int = 50_000,
    ) -> None:
        offline_environment()
        self.name = model
        self.batch_size = batch_size
        self.bulk_threshold = bulk_threshold
        self._device = device
        model_dir = Path(resolve_embedder(model))
        self._model_dir = model_dir
        use_onnx = backend != "torch" and device == "cpu" and model_dir.is_dir() and onnx_compatible(model_dir)
        self.backend = backend if use_onnx else "torch"
        self._onnx: _OnnxTransformer | None = None
        self._model: Any = None
        if use_onnx:
            int8 = backend == "onnx-int8"
            fp32, path = onnx_path(model, cache_dir), onnx_path(model, cache_dir, int8=int8)
            if not path.exists():  # the fp32 export is needed only to make a missing int8 file
                if not fp32.exists():
                    export_onnx(_load_sentence_transformer(str(model_dir), device), fp32)
                if int8:
                    quantize_onnx(fp32, path)
            if int8:
                self.bulk_threshold = 0  # int8 is faster than torch on chunks too, so ingest stays on it
            self._onnx = _OnnxTransformer(path, model_dir, threads)
            self.dim = self._onnx.dim
        else:
            self._model = _load_sentence_transformer(str(model_dir), device)
            get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
            self.dim = int(get_dim() or 0)
        # torch and the fp32 export give the same vectors to float rounding (ingest may mix them: bulk_threshold);
        # int8 weights move them by ~1%
        self.identity = f"{Path(model).name} {'int8r7' if self.backend == 'onnx-int8' else 'fp32'} {self.dim}d"
        self._queries = _LRU(cache_size)
        self._sentences = _LRU(sentence_cache_size)
        self._lock = threading.Lock()

    def embed(self, texts: list[str], *, batch_size: int | None = None) -> np.ndarray:
        """Vectors of `texts`, encoded `batch_size` at a time (QA_EMBEDDING_BATCH_SIZE by default). With int8 weights the
        activations are quantised per batch, padding included, so a text's vector moves with its batch-mates (cosine
        ~0.99 to its vector alone); batch_size=1 gives each text the vector it has alone."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch_size = batch_size or self.batch_size
        with self._lock:  # both engines are parallel inside; concurrent encodes only thrash the 2 cores
            if self._onnx is not None and not (self.bulk_threshold and len(texts) >= self.bulk_threshold):
                return self._onnx.encode(texts, batch_size)
            if self._model is None:
                # an ingest batch sent to torch by QA_EMBEDDING_BULK_THRESHOLD (for a CPU where bench/encoder.py finds
                # torch faster on long chunks), loaded the first time one comes; queries and sentences stay on ONNX
                self._model = _load_sentence_transformer(str(self._model_dir), self._device)
            out = self._model.encode(
                texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(out, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        vec = self._queries.get(text)
        if vec is None:
            vec = self.embed([text])[0]
            self._queries.put(text, vec)
        return vec

    def embed_cached(self, texts: list[str]) -> np.ndarray:
        """Passage sentences recur across questions on the same articles; 50k of them are ~75 MB. Each is encoded alone,
        so its vector, and the evidence chosen with it, does not depend on which sentences were cached by earlier
        questions or on what else the question's chunks hold."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        known = {t: v for t in dict.fromkeys(texts) if (v := self._sentences.get(t)) is not None}
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        for t, v in zip(missing, self.embed(missing, batch_size=1), strict=True):
            known[t] = v
            self._sentences.put(t, v)
        return np.stack([known[t] for t in texts])


def make_embedder(settings: Settings) -> SentenceTransformerEmbedder:
    """The configured encoder, as the service, `models prepare` and the ingest benchmark build it."""
    s = settings
    return SentenceTransformerEmbedder(
        s.embedding_model, batch_size=s.embedding_batch_size, device=s.embedding_device, backend=s.embedding_backend,
        bulk_threshold=s.embedding_bulk_threshold, cache_dir=s.model_cache_dir,
    )
