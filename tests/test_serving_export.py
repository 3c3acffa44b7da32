"""``ovq export-serving``: every name and target checked before anything is written (in this process: writing
a repository needs neither kserve nor a server)."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
import yaml

from ovq.cli import main


def one_line(capsys, *argv: str) -> str:
    code = main(list(argv))
    _, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if "error" in ln or "Traceback" in ln]
    assert code == 2 and len(lines) == 1, err
    return lines[0]


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def test_a_later_target_that_cannot_be_written_stops_the_export_before_the_first(tmp_path, capsys, tiny):
    """With a file at repo/b, repo/a/1 was written and then b failed (and no config.json)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "b").write_text("")
    line = one_line(capsys, "export-serving", str(tiny), str(tiny), "-o", str(repo), "--name", "a", "--name", "b")
    assert line == f"ovq export-serving: error: {repo}/b: exists and is not a folder"
    assert files(repo) == ["b"]


@pytest.mark.parametrize(("name", "fmt"), [("config.json", "ovms"), ("config.pbtxt", "triton"),
                                           ("x.inferenceservice.yaml", "kserve")])
def test_reserved_names_are_refused(tmp_path, capsys, tiny, name, fmt):
    """--name config.json wrote the model to repo/config.json/1/ and then failed; --name config.pbtxt --format
    triton wrote repo/config.pbtxt/config.pbtxt."""
    repo = tmp_path / "repo"
    line = one_line(capsys, "export-serving", str(tiny), "-o", str(repo), "--name", name, "--format", fmt)
    assert f"model name '{name}': the name of a repository's own file" in line
    assert not repo.exists()


@pytest.mark.parametrize("name", ["9Fd_", "_a", "a" * 64])
def test_kserve_names_kubernetes_refuses_are_refused(tmp_path, capsys, tiny, name):
    """--name 9Fd_ wrote metadata.name: 9fd-, which Kubernetes refuses (not a DNS-1035 label)."""
    repo = tmp_path / "k"
    line = one_line(capsys, "export-serving", str(tiny), "-o", str(repo), "--format", "kserve", "--name", name)
    assert f"model name '{name}'" in line
    assert not repo.exists()


def test_kserve_name_is_a_dns_label(tmp_path, capsys, tiny):
    repo = tmp_path / "k"
    assert main(["export-serving", str(tiny), "-o", str(repo), "--format", "kserve", "--name", "Yolo_v8.n", "-q"]) == 0
    service = yaml.safe_load((repo / "Yolo_v8.n.inferenceservice.yaml").read_text(encoding="utf-8"))
    assert service["metadata"]["name"] == "yolo-v8-n"


def test_exports_into_one_repository_at_once_keep_each_others_entries(tmp_path, tiny, monkeypatch):
    """Two exports into one OVMS repository at once (two CI jobs): each read config.json before loading its model
    and wrote it back after, so the later write dropped the other's entry (1 run in 3 here) while both said
    'wrote config.json'. Here export a reads config.json and waits until export b has finished."""
    from ovq.serving import repository

    repo = tmp_path / "repo"
    read, b_done, first_read = repository._read_ovms_config, threading.Event(), []

    def read_then_wait(path: Path) -> list:
        entries = read(path)
        if threading.current_thread().name == "a" and not first_read:
            first_read.append(entries)
            assert b_done.wait(60)
        return entries

    monkeypatch.setattr(repository, "_read_ovms_config", read_then_wait)
    a = threading.Thread(target=repository.export_serving, args=([tiny], repo), kwargs={"names": ["a"]}, name="a")
    a.start()
    while not first_read and a.is_alive():
        a.join(0.01)
    repository.export_serving([tiny], repo, names=["b"])
    b_done.set()
    a.join(60)
    config = json.loads((repo / "config.json").read_text(encoding="utf-8"))
    assert sorted(e["config"]["name"] for e in config["model_config_list"]) == ["a", "b"]
    assert files(repo) == ["a", "a/1", "a/1/model.bin", "a/1/model.xml", "b", "b/1", "b/1/model.bin",
                           "b/1/model.xml", "config.json"]


def test_a_repository_or_its_model_folder_given_as_the_model_says_which_folder_holds_it(tmp_path, capsys, tiny):
    """`ovq serve repo/demo` said only 'folder holds no model (.xml) file'; the model is in repo/demo/VERSION."""
    repo = tmp_path / "repo"
    assert main(["export-serving", str(tiny), "-o", str(repo), "--name", "demo", "-q"]) == 0
    assert main(["export-serving", str(tiny), "-o", str(repo), "--name", "demo", "-q"]) == 0  # version 2
    capsys.readouterr()
    line = one_line(capsys, "bench", str(repo / "demo"))
    assert line.endswith(f"{repo / 'demo'}: folder holds no model (.xml) file; it is a served model's folder with "
                         f"version(s) 1, 2: give one, e.g. {repo / 'demo' / '2'} (the newest, which a server serves)")
    line = one_line(capsys, "bench", str(repo))
    assert line.endswith(f"it is a model repository: give a model's version folder, e.g. {repo / 'demo'}/VERSION")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert one_line(capsys, "bench", str(empty)).endswith(
        f"{empty}: folder holds no model (.xml) file")


@pytest.mark.parametrize("versions", [[], [1]], ids=["alone", "after-a-version"])
def test_a_file_named_as_a_version_is_refused_before_the_model_loads(tmp_path, capsys, tiny, versions):
    """A regular file repo/m/1 (or repo/m/2 beside version 1) failed after the model had loaded, with 'repo/m/1:
    cannot write the model: Not a directory', which says neither that it is a file nor what to do."""
    repo = tmp_path / "repo"
    for v in versions:
        assert main(["export-serving", str(tiny), "-o", str(repo), "--name", "m", "-q"]) == 0
    capsys.readouterr()
    (repo / "m").mkdir(parents=True, exist_ok=True)
    stray = repo / "m" / str(len(versions) + 1)
    stray.write_text("notes")
    before = files(repo)
    line = one_line(capsys, "export-serving", str(tiny), "-o", str(repo), "--name", "m")
    assert line == (f"ovq export-serving: error: {stray}: a file where a version folder goes (a server reads m's "
                    "versions from numbered folders); move it out of the repository")
    assert files(repo) == before and stray.read_text() == "notes"


def test_a_repository_below_a_file_is_refused_naming_the_file(tmp_path, capsys, tiny):
    """-o notes.txt/repo loaded the model, then failed with only 'notes.txt/repo: Not a directory'."""
    afile = tmp_path / "notes.txt"
    afile.write_text("notes")
    line = one_line(capsys, "export-serving", str(tiny), "-o", str(afile / "repo"))
    assert line == f"ovq export-serving: error: {afile / 'repo'}: {afile} is not a folder"
    assert afile.read_text() == "notes"


def test_a_version_folder_given_as_the_model_is_named_for_its_model(tmp_path, capsys, tiny):
    """REPO/demo/1, the folder the messages above point to, was named '1': `ovq serve` served it at /v2/models/1,
    `ovq export-serving` wrote REPO2/1/1, `ovq bench` labelled its row '1'."""
    from ovq.evaluation.speed import model_name
    from ovq.serving.server import served_names

    repo = tmp_path / "repo"
    assert main(["export-serving", str(tiny), "-o", str(repo), "--name", "demo", "-q"]) == 0
    version = repo / "demo" / "1"
    assert served_names([version], []) == ["demo"]
    assert model_name(version) == model_name(version / "model.xml") == "demo/1"
    capsys.readouterr()
    assert main(["export-serving", str(version), "-o", str(tmp_path / "repo2")]) == 0
    assert capsys.readouterr().out.startswith(f"demo: version 1 in {tmp_path / 'repo2' / 'demo' / '1'}")


def _stored_precision(tiny: Path, folder: Path, precision: str) -> Path:
    """``tiny`` with the precision ``ovq quantize --precision`` stores (the one its accuracy was validated at)."""
    import openvino as ov

    from ovq.core.metadata import write_info
    from ovq.model.detector import load

    model, info = load(tiny)
    info.compile_config = {"INFERENCE_PRECISION_HINT": precision}
    write_info(model, info)
    ov.save_model(model, folder / "model.xml", compress_to_fp16=False)
    return folder


def test_the_precision_a_model_was_validated_at_reaches_kserve_and_triton(tmp_path, capsys, tiny):
    """A model quantized with --precision f32 was exported with INFERENCE_PRECISION_HINT in OVMS's config.json only:
    the KServe manifest's --plugin_config and Triton's config.pbtxt held only PERFORMANCE_HINT, so those servers ran
    it at the device's default (bf16 here), not at the precision its accuracy was validated at, and nothing said so."""
    f32 = _stored_precision(tiny, tmp_path / "f32", "f32")
    bf16 = _stored_precision(tiny, tmp_path / "bf16", "bf16")
    repo = tmp_path / "repo"
    assert main(["export-serving", str(f32), "-o", str(repo), "--format", "kserve", "--name", "q", "-q"]) == 0
    args = yaml.safe_load((repo / "q.inferenceservice.yaml").read_text())["spec"]["predictor"]["model"]["args"]
    plugin = json.loads(next(a for a in args if a.startswith("--plugin_config=")).split("=", 1)[1])
    assert plugin == {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}
    capsys.readouterr()
    assert main(["export-serving", str(bf16), "-o", str(repo / "t"), "--format", "triton", "--name", "b", "-q"]) == 0
    assert 'parameters: { key: "HINT_BF16" value: { string_value: "YES" } }' in (repo / "t/b/config.pbtxt").read_text()
    assert capsys.readouterr().err == ""
    assert main(["export-serving", str(f32), "-o", str(repo / "t"), "--format", "triton", "--name", "f", "-q"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "WARNING" in err[0] and err[0].endswith(
        "f: validated at inference precision f32, which Triton's OpenVINO backend cannot be told (its parameters "
        "set only bf16): it runs the model at the device's default (bf16 on CPUs with AMX or AVX-512 BF16); "
        "--format ovms or kserve keeps f32")


@pytest.mark.parametrize("device", ["GPU", "GPU.1", "AUTO:GPU,CPU"])
def test_a_bf16_validated_model_for_a_gpu_gets_no_cpu_precision(tmp_path, capsys, tiny, device):
    """Exported for --device GPU, a model validated at bf16 (a CPU's precision) still got Triton's HINT_BF16 and
    OVMS's/KServe's INFERENCE_PRECISION_HINT bf16, which OpenVINO's GPU plugin does not run (it takes f16 or f32).
    Now no hint (the GPU runs f16, its default), said once per model; a precision the GPU runs (f32) is kept."""
    bf16 = _stored_precision(tiny, tmp_path / "bf16", "bf16")
    f32 = _stored_precision(tiny, tmp_path / "f32", "f32")
    repo = tmp_path / "repo"
    for fmt in ("triton", "ovms", "kserve"):
        capsys.readouterr()
        assert main(["export-serving", str(bf16), "-o", str(repo / fmt), "--format", fmt, "--device", device,
                     "--name", "b", "-q"]) == 0
        err = [line for line in capsys.readouterr().err.splitlines() if "WARNING" in line and "--hint" not in line]
        assert len(err) == 1 and err[0].endswith(
            f"b: validated at inference precision bf16, which a GPU does not run (its plugin takes f16 or f32): "
            f"written for {device} without a precision hint, so it runs at f16, the GPU's default"), err
    written = [f.read_text() for f in repo.rglob("*") if f.suffix in (".pbtxt", ".json", ".yaml")]
    assert len(written) == 3 and not any("bf16" in text.lower() for text in written), written
    assert main(["export-serving", str(f32), "-o", str(repo / "ovms"), "--device", device, "--name", "f", "-q"]) == 0
    entries = json.loads((repo / "ovms/config.json").read_text())["model_config_list"]
    assert [e["config"]["plugin_config"] for e in entries] == [
        {"PERFORMANCE_HINT": "THROUGHPUT"}, {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f32"}]


@pytest.mark.parametrize(("argv", "said"), [
    (["--format", "triton", "--nireq", "4"], ("--nireq 4: Triton's OpenVINO backend takes no infer-request count; "
                                             "drop --nireq (--format ovms and kserve write it)")),
    (["--storage-uri", "s3://b/m"], ("--storage-uri s3://b/m: only --format kserve writes it (the manifest's "
                                    "storageUri); drop it or add --format kserve")),
    (["--format", "triton", "--storage-uri", "s3://b/m"], "--storage-uri s3://b/m: only --format kserve writes it"),
], ids=["nireq-triton", "storage-uri-ovms", "storage-uri-triton"])
def test_an_option_the_format_does_not_write_is_refused(tmp_path, capsys, tiny, argv, said):
    """--nireq 4 --format triton and --storage-uri with ovms or triton exited 0, the option written nowhere."""
    repo = tmp_path / "repo"
    line = one_line(capsys, "export-serving", str(tiny), "-o", str(repo), *argv)
    assert line.startswith(f"ovq export-serving: error: {said}")
    assert not repo.exists()


def test_kserve_manifest_carries_nireq(tmp_path, tiny):
    """--format kserve --nireq 4 wrote no nireq: KServe's OpenVINO runtime (OVMS) chose its own."""
    repo = tmp_path / "k"
    assert main(["export-serving", str(tiny), "-o", str(repo), "--format", "kserve", "--name", "m", "--nireq", "4",
                 "-q"]) == 0
    args = yaml.safe_load((repo / "m.inferenceservice.yaml").read_text())["spec"]["predictor"]["model"]["args"]
    assert "--nireq=4" in args


def test_the_device_is_checked_and_written_as_openvino_spells_it(tmp_path, capsys, tiny):
    """--device cpu wrote "target_device": "cpu", a name OpenVINO does not know ("cpu" is not registered), and
    --device GPU:1 was written as given; the server failed to load the model, not the export."""
    repo = tmp_path / "repo"
    assert main(["export-serving", str(tiny), "-o", str(repo), "--name", "m", "--device", "cpu", "-q"]) == 0
    entry = json.loads((repo / "config.json").read_text())["model_config_list"][0]["config"]
    assert entry["target_device"] == "CPU"
    line = one_line(capsys, "export-serving", str(tiny), "-o", str(tmp_path / "k"), "--format", "kserve",
                    "--device", "GPU:1")
    assert line == ("ovq export-serving: error: device 'GPU:1': only AUTO, MULTI, HETERO, BATCH take a device list "
                    "after ':'")
    assert not (tmp_path / "k").exists()


def test_kserve_names_that_make_one_inference_service_are_refused(tmp_path, capsys, tiny):
    """--name fd_a and --name fd.a (or fd-a later, beside fd_a's manifest) wrote manifests that all name the
    InferenceService 'fd-a': `kubectl apply` of each replaced the one before, and one model of three was served."""
    repo = tmp_path / "k"
    line = one_line(capsys, "export-serving", str(tiny), str(tiny), "-o", str(repo), "--format", "kserve",
                    "--name", "fd_a", "--name", "fd.a")
    assert line == ("ovq export-serving: error: model name 'fd.a': its InferenceService would be named 'fd-a', as "
                    "model 'fd_a''s is; applying both, the second replaces the first; give another with --name")
    assert not repo.exists()
    assert main(["export-serving", str(tiny), "-o", str(repo), "--format", "kserve", "--name", "fd_a", "-q"]) == 0
    assert main(["export-serving", str(tiny), "-o", str(repo), "--format", "kserve", "--name", "fd_a", "-q"]) == 0
    capsys.readouterr()
    before = files(repo)
    line = one_line(capsys, "export-serving", str(tiny), "-o", str(repo), "--format", "kserve", "--name", "fd-a")
    assert line == ("ovq export-serving: error: model name 'fd-a': its InferenceService would be named 'fd-a', as "
                    f"model 'fd_a''s is ({repo / 'fd_a.inferenceservice.yaml'}); applying both, the second replaces "
                    "the first; give another with --name")
    assert files(repo) == before


def test_an_empty_repository_path_is_refused(tmp_path, capsys, tiny, monkeypatch):
    """-o '' (an unset variable, -o "$REPO") wrote config.json and NAME/1 into the working folder, exit 0."""
    monkeypatch.chdir(tmp_path)
    line = one_line(capsys, "export-serving", str(tiny), "-o", "")
    assert line == "ovq export-serving: error: -o '': an empty path; give the repository folder (-o . for this one)"
    assert files(tmp_path) == []


def test_a_folder_named_with_a_non_ascii_digit_is_not_a_version(tmp_path, capsys, tiny):
    """A folder REPO/m/² (or one with a model.xml, given to bench as REPO/m) ended in a traceback, "ValueError: invalid
    literal for int() with base 10: '²'": str.isdigit takes the superscript, int does not."""
    repo = tmp_path / "repo"
    (repo / "m" / "\u00b2").mkdir(parents=True)
    assert main(["export-serving", str(tiny), "-o", str(repo), "--name", "m", "-q"]) == 0
    assert capsys.readouterr().out.startswith(f"m: version 1 in {repo / 'm' / '1'}")
    shutil.copy(tiny, repo / "m" / "\u00b2" / "model.xml")
    shutil.rmtree(repo / "m" / "1")
    assert one_line(capsys, "bench", str(repo / "m")).endswith(f"{repo / 'm'}: folder holds no model (.xml) file")


@pytest.mark.parametrize("uri", ["models/repo", "bucket/models", "s3:/bucket", " "])
def test_a_storage_uri_without_a_scheme_is_refused(tmp_path, capsys, tiny, uri):
    """--storage-uri models/repo wrote storageUri: models/repo/NAME, which KServe's webhook refuses when the manifest
    is applied (it takes s3://, gs://, pvc://, https:// ... only): the export said it was done."""
    repo = tmp_path / "k"
    line = one_line(capsys, "export-serving", str(tiny), "-o", str(repo), "--format", "kserve", "--storage-uri", uri)
    assert line == (f"ovq export-serving: error: --storage-uri {uri!r}: not a URI; expected where the cluster reads "
                    "the repository from, e.g. s3://bucket/models, gs://bucket/models or pvc://claim/models")
    assert not repo.exists()


def test_a_version_folder_given_from_inside_its_model_folder_is_named_for_its_model(tmp_path, capsys, tiny,
                                                                                     monkeypatch):
    """From inside REPO/demo, `ovq export-serving 1 -o REPO2` (and `ovq serve 1`) still named the model '1': the
    relative path had no parent to take the name from."""
    from ovq.serving.server import served_names

    repo = tmp_path / "repo"
    assert main(["export-serving", str(tiny), "-o", str(repo), "--name", "demo", "-q"]) == 0
    monkeypatch.chdir(repo / "demo")
    assert [served_names([path], []) for path in ("1", "./1/", "1/model.xml")] == [["demo"]] * 3


@pytest.mark.parametrize(("command", "said"), [
    ("export-serving", ("export-serving writes model files into a repository; give a model folder, .xml, .onnx or "
                       ".pt (the server has the model's files)")),
    ("serve", ("ovq serve hosts model files; give a model folder, .xml or .onnx (a served model is used by its URL: "
              "ovq run, eval, predict, bench)")),
])
def test_a_served_models_url_is_refused_as_a_model_file(tmp_path, capsys, command, said):
    """`ovq export-serving URL -o R` and `ovq serve URL` said 'http:/127.0.0.1:9/v2/models/fd: no such file or
    folder': the URL taken for a path, with one of its slashes gone."""
    url = "http://127.0.0.1:9/v2/models/fd"
    argv = [command, url, "-o", str(tmp_path / "r")] if command == "export-serving" else [command, url]
    line = one_line(capsys, *argv)
    assert line == f"ovq {command}: error: {url}: a served model's URL; {said}"
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(("command", "said"), [
    ("convert", ("convert reads a model's files; give a model folder, .xml, .onnx or .pt (a served model's files are "
                "on its server: convert them there)")),
    ("quantize", ("quantize reads the float model's files and writes INT8 ones; give a model folder, .xml, .onnx or "
                 ".pt (quantize the served model's files, then serve the result)")),
    ("bundle", ("a bundle ships a local model; give a model folder, .xml, .onnx or .pt (or leave MODEL out: the "
               "pipeline's)")),
    ("demo", "the demo quantizes and runs a local model; give the demo model's folder (or leave --model out)"),
])
def test_the_commands_taking_model_files_name_a_served_models_url_as_one(tmp_path, capsys, tiny, command, said):
    """`ovq convert URL -o OUT`, `ovq quantize URL ...`, `ovq bundle URL --pipeline P -o OUT`, `ovq demo --model URL`
    said 'http:/127.0.0.1:9/v2/models/fd: no such file or folder' (the demo: '...: demo model not found'), the URL
    taken for a path with one of its slashes gone."""
    url = "http://127.0.0.1:9/v2/models/fd"
    out = tmp_path / "out"
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(f"model: {tiny}\nsources: [{{name: a, url: {tmp_path / 'a.mp4'}}}]\n", encoding="utf-8")
    argv = {"convert": ["convert", url, "-o", str(out)],
            "quantize": ["quantize", url, "--data", str(tmp_path), "-o", str(out)],
            "bundle": ["bundle", url, "--pipeline", str(pipeline), "-o", str(out)],
            "demo": ["demo", "--model", url, "-o", str(out)]}[command]
    line = one_line(capsys, *argv)
    assert line == f"ovq {command}: error: {url}: a served model's URL; {said}"
    assert not out.exists()


@pytest.mark.parametrize(("device", "target"), [("GPU", "GPU"), ("gpu.1", "GPU.1"), ("CPU", None)])
def test_triton_runs_an_intel_gpu_from_a_cpu_instance_with_target_device(tmp_path, tiny, device, target):
    """--device GPU wrote 'kind: KIND_GPU', a CUDA GPU to Triton, which the OpenVINO backend refuses ('supports only
    CPU device'); the backend takes an Intel GPU as its TARGET_DEVICE parameter on a KIND_CPU instance."""
    repo = tmp_path / "t"
    assert main(["export-serving", str(tiny), "-o", str(repo), "--format", "triton", "--name", "m", "--device",
                 device, "-q"]) == 0
    pbtxt = (repo / "m/config.pbtxt").read_text()
    assert "instance_group [ { count: 1, kind: KIND_CPU } ]" in pbtxt and "KIND_GPU" not in pbtxt
    said = [line for line in pbtxt.splitlines() if "TARGET_DEVICE" in line]
    assert said == ([f'parameters: {{ key: "TARGET_DEVICE" value: {{ string_value: "{target}" }} }}'] if target
                    else [])


@pytest.mark.parametrize("device", ["GPU", "NPU", "AUTO:GPU,CPU", "CPU"])
def test_triton_writes_the_performance_hint_only_where_its_backend_reads_it(tmp_path, tiny, capsys, device):
    """Triton's OpenVINO backend reads its parameters, PERFORMANCE_HINT among them, only when its device is CPU
    (openvino_backend's ParseParameters(device)): for --device GPU the hint was written and ignored without a word.
    Now it is left out for another device and a warning says so; the CPU keeps it, without a warning."""
    repo = tmp_path / "t"
    assert main(["export-serving", str(tiny), "-o", str(repo), "--format", "triton", "--name", "m", "--device",
                 device, "--hint", "latency", "-q"]) == 0
    pbtxt = (repo / "m/config.pbtxt").read_text()
    warned = [line for line in capsys.readouterr().err.splitlines() if "WARNING" in line]
    if device == "CPU":
        assert 'parameters: { key: "PERFORMANCE_HINT" value: { string_value: "LATENCY" } }' in pbtxt and not warned
    else:
        assert "PERFORMANCE_HINT" not in pbtxt
        assert len(warned) == 1 and warned[0].endswith(
            "m: Triton's OpenVINO backend reads PERFORMANCE_HINT only when its device is CPU: --hint LATENCY is left out "
            f"of config.pbtxt, so {device} compiles the model with its own default hint; --format ovms or kserve "
            "passes it"), warned


@pytest.mark.parametrize(("device", "precision", "said"), [
    ("NPU", "bf16", ("which an NPU does not run (its plugin takes f16): written for NPU without a precision hint, so "
                    "it runs at f16, the NPU's default")),
    ("NPU.1", "f32", ("which an NPU does not run (its plugin takes f16): written for NPU.1 without a precision hint, "
                     "so it runs at f16, the NPU's default")),
    ("HETERO:NPU,CPU", "bf16", ("which an NPU does not run (its plugin takes f16): written for HETERO:NPU,CPU without "
                               "a precision hint, so it runs at f16, the NPU's default")),
    ("AUTO", "bf16", ("which AUTO may give to a GPU that does not run it (its plugin takes f16 or f32): written "
                     "without a precision hint, so it runs at the chosen device's default")),
    ("FPGA", "bf16", ("which FPGA is not known to run: written without a precision hint, so it runs at the device's "
                     "default")),
])
def test_a_precision_an_npu_or_another_device_does_not_run_is_left_out(tmp_path, capsys, tiny, device, precision,
                                                                       said):
    """For --device NPU (and another device but the CPU and a GPU) a model validated at bf16 still got OVMS's and
    KServe's INFERENCE_PRECISION_HINT bf16, a CPU's precision; an NPU takes f16. Now left out with a warning, as for
    a GPU (c57ee22); an NPU keeps a stored f16."""
    model = _stored_precision(tiny, tmp_path / precision, precision)
    repo = tmp_path / "repo"
    for fmt in ("ovms", "kserve"):
        capsys.readouterr()
        assert main(["export-serving", str(model), "-o", str(repo / fmt), "--format", fmt, "--device", device,
                     "--name", "b", "-q"]) == 0
        err = [line for line in capsys.readouterr().err.splitlines() if "WARNING" in line]
        assert len(err) == 1 and err[0].endswith(f"b: validated at inference precision {precision}, {said}"), err
    written = [f.read_text() for f in repo.rglob("*") if f.suffix in (".json", ".yaml")]
    assert len(written) == 2 and not any("INFERENCE_PRECISION_HINT" in text for text in written), written
    f16 = _stored_precision(tiny, tmp_path / "f16", "f16")
    assert main(["export-serving", str(f16), "-o", str(repo / "npu"), "--device", "NPU", "--name", "h", "-q"]) == 0
    entries = json.loads((repo / "npu/config.json").read_text())["model_config_list"]
    assert [e["config"]["plugin_config"] for e in entries] == [
        {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_PRECISION_HINT": "f16"}]
