"""vLLM plans: each scenario's flags, the fit check with its numbers, saved plans, the API;
and memory estimates against published file sizes."""

import shlex

import pytest

from console import plans, sizing
from console.models import AuditEvent, Backend, DeploymentPlan

GIB = 1024 ** 3
L4 = {"name": "NVIDIA L4", "memory_bytes": 24 * GIB}


def flags(command):
    return shlex.split(command)


@pytest.mark.parametrize("scenario, expected, absent", [
    ("development", ["--gpu-memory-utilization", "0.80", "--max-model-len", "4096",
                     "--enforce-eager", "--no-enable-prefix-caching"],
     ["--enable-chunked-prefill", "--tensor-parallel-size", "--speculative-config"]),
    ("staging", ["0.85", "8192", "--enable-prefix-caching", "--enable-chunked-prefill",
                 "--max-num-seqs", "64"], ["--enforce-eager", "--tensor-parallel-size"]),
    ("production_low", ["0.90", "--max-num-seqs", "128", "--max-num-batched-tokens", "8192"],
     ["--tensor-parallel-size"]),
    ("production_high", ["0.92", "16384", "--tensor-parallel-size", "2", "256"],
     ["--speculative-config"]),
    ("enterprise", ["0.95", "32768", "--tensor-parallel-size", "2", "--speculative-config",
                    "--max-num-seqs", "512"], ["--enforce-eager"]),
])
def test_each_scenario_yields_its_flags(scenario, expected, absent):
    result = plans.plan("Qwen/Qwen2.5-1.5B-Instruct", scenario, [L4, L4])
    words = flags(result.command)
    assert words[:3] == ["vllm", "serve", "Qwen/Qwen2.5-1.5B-Instruct"]
    for flag in expected:
        assert flag in words, (scenario, flag)
    for flag in absent:
        assert flag not in words, (scenario, flag)
    assert words[-3:] == ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    docker = flags(result.docker_command)
    assert docker[:2] == ["docker", "run"] and "--gpus" in docker
    assert docker[docker.index("vllm/vllm-openai:latest") + 1:][:2] == [
        "--model", "Qwen/Qwen2.5-1.5B-Instruct"]
    assert result.fits


def test_a_plan_that_does_not_fit_is_refused_with_the_numbers():
    t4 = {"name": "T4", "memory_bytes": 16 * GIB}
    result = plans.plan("meta-llama/Llama-3.1-8B-Instruct", "enterprise", [t4])
    assert not result.fits
    assert result.per_gpu_bytes > result.budget_bytes
    assert "does not fit: each GPU needs about" in result.warnings[0]
    assert "95% of 16.0 GiB is 15.2 GiB" in result.warnings[0]
    smaller = plans.plan("meta-llama/Llama-3.1-8B-Instruct", "development", [t4],
                         quantization="awq")
    assert smaller.fits and "--quantization" in flags(smaller.command)
    assert flags(smaller.command)[-1] == "llama3_json"


def test_tool_parsers_and_unknown_models():
    phi35 = plans.plan("microsoft/Phi-3.5-mini-instruct", "staging", [L4])
    assert "--enable-auto-tool-choice" not in phi35.command
    assert "no tool-call parser" in phi35.warnings[0]
    assert "phi4_mini_json" in plans.plan("microsoft/Phi-4-mini-instruct", "staging",
                                          [L4]).command
    other = plans.plan("someorg/Edge-Chat-3B", "staging", [L4])
    assert any("not in Tanglaw's table" in w for w in other.warnings)
    with pytest.raises(plans.PlanError, match="does not know"):
        plans.plan("someorg/edge-chat", "staging", [L4])
    with pytest.raises(plans.PlanError, match="vLLM needs at least one GPU"):
        plans.plan("Qwen/Qwen2.5-7B-Instruct", "staging", [])
    with pytest.raises(plans.PlanError, match="One of development"):
        plans.plan("Qwen/Qwen2.5-7B-Instruct", "huge", [L4])


def test_tensor_parallel_respects_the_kv_heads():
    # Qwen2.5-0.5B has 2 KV heads: of 8 GPUs only 2 can share one replica
    result = plans.plan("Qwen/Qwen2.5-0.5B-Instruct", "production_high", [L4] * 8)
    assert result.tensor_parallel_size == 2
    assert any("6 GPU(s) left out" in w for w in result.warnings)


# download sizes the Ollama library lists for these tags (GB, as shown there)
# (tolerance: the k-quants keep the embedding and output tensors at higher precision, which
# weighs most in the smallest models — Qwen2.5-0.5B's 136 M embedding parameters are a
# quarter of it — so its estimate is allowed 30 %, the others 15 %)
KNOWN_FILES = [
    ("qwen2.5:0.5b", 0.49e9, "Q4_K_M", 0.398e9, 0.30),
    ("llama3.2:3b", 3.21e9, "Q4_K_M", 2.0e9, 0.15),
    ("qwen2.5:7b", 7.62e9, "Q4_K_M", 4.7e9, 0.15),
    ("llama3.1:8b", 8.03e9, "Q4_K_M", 4.9e9, 0.15),
    ("qwen2.5:7b-instruct-q8_0", 7.62e9, "Q8_0", 8.1e9, 0.15),
    ("llama3.2:1b-instruct-q8_0", 1.24e9, "Q8_0", 1.3e9, 0.15),
]


@pytest.mark.parametrize("name, params, quant, file_bytes, tolerance", KNOWN_FILES)
def test_weight_estimates_match_published_file_sizes(name, params, quant, file_bytes,
                                                     tolerance):
    """Weights alone (no overhead) against the published GGUF file size."""
    weights = sizing.estimate(params, quant)["weights"]
    assert weights == pytest.approx(file_bytes, rel=tolerance), name


def test_the_kv_cache_grows_with_the_context():
    small = sizing.estimate(7.62e9, "Q4_K_M", context=4096, layers=28, kv_heads=4, head_dim=128)
    large = sizing.estimate(7.62e9, "Q4_K_M", context=32768, layers=28, kv_heads=4,
                            head_dim=128)
    assert small["kv_cache"] == 2 * 28 * 4 * 128 * 4096 * 2 == 234_881_024
    assert large["kv_cache"] == 8 * small["kv_cache"]
    assert large["total"] == pytest.approx((large["weights"] + large["kv_cache"]) * 1.1)


@pytest.mark.django_db
def test_plans_api_page_and_saving(operator_client, viewer_client):
    answer = viewer_client.post("/api/plans/vllm", data={
        "model": "Qwen/Qwen2.5-7B-Instruct", "scenario": "production_low",
        "gpus": [{"name": "L4", "memory_bytes": 24 * GIB}]}, content_type="application/json")
    assert answer.status_code == 200
    body = answer.json()
    assert body["fits"] and body["command"].startswith("vllm serve Qwen/Qwen2.5-7B-Instruct")
    assert set(body) >= {"command", "docker_command", "fits", "estimate_bytes", "warnings"}
    no_gpu = viewer_client.post("/api/plans/vllm", data={
        "model": "Qwen/Qwen2.5-7B-Instruct", "scenario": "staging"},
        content_type="application/json")
    assert no_gpu.status_code == 422 and "gpus" in no_gpu.json()["errors"]
    backend = Backend.objects.create(name="gpu-box", kind="vllm", base_url="http://10.0.0.5:8000")
    saved = operator_client.post("/api/plans", data={
        "name": "edge-7b", "model": "Qwen/Qwen2.5-7B-Instruct", "scenario": "staging",
        "gpus": [{"name": "L4", "memory_bytes": 24 * GIB}], "backend_id": backend.pk},
        content_type="application/json")
    assert saved.status_code == 201 and saved.json()["backend_id"] == backend.pk
    assert viewer_client.post("/api/plans", data={"name": "x", "model": "m", "scenario":
                                                   "staging"},
                              content_type="application/json").status_code == 403
    page = operator_client.post("/plans/", {"model": "Qwen/Qwen2.5-7B-Instruct",
                                            "scenario": "enterprise", "gpus": "1 x 16",
                                            "action": "plan"}).content.decode()
    assert "does not fit" in page and "data-copy=\"cmd\"" in page
    assert "edge-7b" in page
    bad = operator_client.post("/plans/", {"model": "x", "scenario": "staging",
                                           "gpus": "lots", "action": "plan"}).content.decode()
    assert "COUNT x GiB" in bad
    operator_client.post("/plans/", {"model": "Qwen/Qwen2.5-1.5B-Instruct",
                                     "scenario": "staging", "gpus": "1 x 24",
                                     "action": "save", "name": "from-page",
                                     "backend_id": str(backend.pk)})
    assert DeploymentPlan.objects.get(name="from-page").backend == backend
    assert AuditEvent.objects.filter(action="plan.saved").count() == 2


def test_right_sizing_warns_before_a_pull_or_load(live_db, operator_client, fake):
    from django.utils import timezone

    from monitoring.models import Sample

    gb = 1e9
    for metric, value in (("memory_total_bytes", 16 * gb), ("memory_used_bytes", 12 * gb)):
        Sample.objects.create(ts=timezone.now(), metric=metric, scope="host", value=value)
    engine = fake("ollama")
    backend = Backend.objects.create(name="ollama", kind="ollama", base_url=engine.url)
    # 4 GB free: qwen2.5-coder:7b (≈ 4.7 GB download) will not fit; Q4_K_M is its default,
    # and nothing smaller of it fits either
    page = operator_client.post(f"/backends/{backend.pk}/models/pull/",
                                {"model": "qwen2.5-coder:7b"}, follow=True).content.decode()
    assert "needs about 5.2 GB but only 4.0 GB is free now" in page
    from console import jobs
    from console.models import Job

    jobs.step("monitor-1")  # the pull itself still runs (in the monitor)
    assert Job.objects.get().state == "succeeded"
    page = operator_client.post(f"/backends/{backend.pk}/models/load/",
                                {"model": "llama3.2:3b", "keep_alive": "30m"},
                                follow=True).content.decode()
    # 2.0 GB × 1.1 fits in 4 GB, but takes memory to about 89 % (> 85 %)
    assert "takes host memory to about 89 %, over the 85 % alert threshold" in page
    assert "Loaded llama3.2:3b" in page
