"""One build path: ``ovq run``'s flags become the same PipelineConfig a YAML file loads, built by the same code."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from ovq.cli import build_parser, main
from ovq.cli.run import config_from_args
from ovq.core.errors import ConfigError
from ovq.deployment.build import build_pipeline
from ovq.deployment.fields import Origin
from ovq.deployment.loader import load_pipeline_config, parse_pipeline_config


def from_flags(*argv: str):
    return config_from_args(build_parser().parse_args(["run", *argv]))


class Collect:
    def __init__(self) -> None:
        self.results: list = []
        self.closed = False

    def write(self, result) -> None:
        self.results.append(result)

    def close(self) -> None:
        self.closed = True


def test_flags_make_the_config_a_yaml_file_would(tmp_path):
    model, video = tmp_path / "m.xml", tmp_path / "a.mp4"
    cli = from_flags(str(model), "--source", str(video), "--source", "synth://conveyor")
    yml = parse_pipeline_config({"model": str(model), "sources": [str(video), "synth://conveyor"]},
                                tmp_path / "p.yaml", environ={})
    assert cli.path is None
    assert dataclasses.replace(cli, path=yml.path, raw=yml.raw) == yml  # every default the same


def test_every_flag_lands_in_the_config(tmp_path):
    cfg = from_flags(
        "m.xml", "--source", "clip.mp4", "--source", "0", "--name", "door", "--name", "cam", "--device", "cpu",
        "--precision", "f32", "--hint", "latency", "--nireq", "3", "--conf", "0.4", "--track", "--out", "o/x.mp4",
        "--jsonl", "o/x.jsonl", "--mqtt", "broker:1884", "--mqtt-topic", "line3", "--max-frames", "9",
        "--stats-interval", "0", "--no-retry", "--stall-timeout", "2", "--retry-max-delay", "0.2", "--realtime",
        "--resize", "graph", "--decode", "software",
    )
    assert cfg.model == Path("m.xml")  # relative paths stay relative to the working directory
    assert [(s.name, s.url) for s in cfg.sources] == [("door", "clip.mp4"), ("cam", "0")]
    assert (cfg.device, cfg.precision, cfg.hint, cfg.nireq, cfg.conf, cfg.track) == ("CPU", "f32", "latency", 3, 0.4, True)
    assert cfg.sinks.video == Path("o/x.mp4") and cfg.sinks.jsonl == Path("o/x.jsonl") and not cfg.sinks.show
    assert cfg.sinks.mqtt.url == "mqtt://broker:1884" and cfg.sinks.mqtt.topic_prefix == "line3"
    assert (cfg.max_frames, cfg.stats_interval, cfg.realtime) == (9, 0, True)
    assert (cfg.resize, cfg.decode) == ("graph", "software")
    r = cfg.reconnect
    assert (r.initial_delay, r.max_delay, r.stall_timeout, r.retry) == (0.2, 0.2, 2, False)
    bare = from_flags("m.xml", "--source", "0", "--mqtt")
    assert bare.sinks.mqtt.url is None and bare.sinks.mqtt.url_env == "OVQ_MQTT_URL"
    assert bare.sinks.mqtt.topic_prefix == "ovq" and bare.source_names is None


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--conf", "7"], "--conf: expected a number <= 1, got 7"),
        (["--max-frames", "0"], "--max-frames: expected an integer >= 1, got 0"),
        (["--nireq", "-1"], "--nireq: expected an integer >= 0, got -1"),
        (["--stall-timeout", "0"], "--stall-timeout: expected a number > 0, got 0"),
        (["--stall-timeout", "nan"], "--stall-timeout: expected a finite number, got nan"),  # turned detection off
        (["--stall-timeout", "inf"], "--stall-timeout: expected a finite number, got inf"),
        (["--conf", "nan"], "--conf: expected a finite number, got nan"),
        (["--stats-interval", "nan"], "--stats-interval: expected a finite number, got nan"),
        (["--retry-max-delay", "0"], "--retry-max-delay: expected a number > 0, got 0"),
        (["--mqtt-topic", "a/#", "--mqtt", "b"], "--mqtt-topic: MQTT wildcards # and + cannot be published to"),
        (["--mqtt", "ws://b"], "--mqtt: ws://b: unknown MQTT broker scheme 'ws://'"),
        (["--mqtt", "mqtt://u:pw@b"], "--mqtt: do not put credentials on the command line"),
        (["--device", "XPU:CPU"], "--device: device 'XPU:CPU': only AUTO, MULTI, HETERO, BATCH take"),
        (["--name", "a", "--source", "1"], "--name: 1 stream names for 2 sources (one per --source)"),
        (["--source", "rstp://cam/1"], "--source: rstp://cam/1: unknown stream scheme 'rstp://'; did you mean 'rtsp://'?"),
        (["--mqtt", "mqtt://u:s3cret@b:70000"], "--mqtt: mqtt://u:***@b:70000: bad port '70000' (expected 1-65535)"),
        (["--mqtt", "mqtt://[::1:1883"], "--mqtt: mqtt://[::1:1883: malformed IPv6 host (no closing ']')"),
        (["--source", "rtsp://u:${OVQ_TEST_UNSET}@cam/1"],
         "--source rtsp://u:***@cam/1: environment variable OVQ_TEST_UNSET is not set (referenced as ${OVQ_TEST_UNSET})"),
        (["--source", "rtsp://u:s3cret@cam:0/1"], "--source: rtsp://u:***@cam:0/1: bad port '0' (expected 1-65535)"),
        (["--resize", "gpu"], "--resize: expected one of auto, python, graph, got 'gpu'"),
        (["--decode", "vaapu"], "--decode: expected one of auto, software, vaapi, mfx, d3d11, got 'vaapu'"),
    ],
)
def test_bad_flags_are_named(argv, message):
    with pytest.raises(ConfigError) as err:
        from_flags("m.xml", "--source", "0", *argv)
    assert str(err.value) == message or str(err.value).startswith(message)
    assert "s3cret" not in str(err.value)


def test_source_takes_environment_references(monkeypatch):
    """A camera password in the environment, not in the command line that ``ps`` shows."""
    monkeypatch.setenv("OVQ_TEST_CAM_USER", "admin")
    monkeypatch.setenv("OVQ_TEST_CAM_PASSWORD", "pa/ss@word")
    cfg = from_flags("m.xml", "--source", "rtsp://${OVQ_TEST_CAM_USER}:${OVQ_TEST_CAM_PASSWORD}@10.0.0.5:554/1")
    assert cfg.sources[0].url == "rtsp://admin:pa/ss@word@10.0.0.5:554/1"
    assert cfg.to_dict(mask_secrets=True)["sources"][0]["url"] == "rtsp://admin:***@10.0.0.5:554/1"


def test_cli_errors_name_the_flag_in_one_line(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OVQ_MQTT_URL", raising=False)
    cases = [
        ([str(tmp_path / "nope.xml"), "--source", "0"], f"MODEL: {tmp_path / 'nope.xml'}: no such file or folder"),
        ([str(tiny), "--source", str(tmp_path / "clip.mp4")], f"--source: {tmp_path / 'clip.mp4'}: no such file"),
        ([str(tiny), "--source", "synth://conveyor", "--mqtt"],
         "--mqtt: no broker URL: set the environment variable OVQ_MQTT_URL (e.g. mqtt://broker:1883) or give --mqtt URL"),
    ]
    for argv, message in cases:
        assert main(["run", *argv, "-q"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"ovq run: error: {message}"] or (len(err) == 1 and err[0].startswith(f"ovq run: error: {message}"))


def test_command_line_origin_names_flags_and_parents():
    origin = Origin.command_line({"sources": "--source", "sinks.mqtt": "--mqtt", "sinks.mqtt.url": "--mqtt URL"})
    assert origin.name_of("sources[3].url") == "--source"
    assert origin.name_of("sinks.mqtt.topic_prefix") == "--mqtt"
    assert origin.name_of("sinks.mqtt.url") == "--mqtt URL"
    assert origin.name_of("realtime") == "realtime"  # no flag for it: the key path
    assert str(origin.error("", "whole")) == "whole"
    assert str(Origin.yaml_file(Path("a/p.yaml")).error("sinks.mqtt", "x")) == "a/p.yaml: sinks.mqtt: x"


def test_build_pipeline_feeds_extra_sinks_and_closes_them(tiny, tmp_path):
    cfg = from_flags(str(tiny), "--source", "synth://conveyor?width=96&height=64", "--device", "CPU",
                     "--max-frames", "4", "--jsonl", str(tmp_path / "o.jsonl"), "--stats-interval", "0")
    extra = Collect()
    summary = build_pipeline(cfg, extra_sinks=[extra]).run()
    assert summary.frames == 4 and len(extra.results) == 4 and extra.closed
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 4
    assert summary.device == "CPU"


def test_a_failed_build_closes_the_extra_sinks(tiny, tmp_path):
    missing = from_flags(str(tmp_path / "nope.xml"), "--source", "0")
    extra = Collect()
    with pytest.raises(ConfigError, match="MODEL: .*nope.xml: no such file"):
        build_pipeline(missing, extra_sinks=[extra])
    assert extra.closed


def test_a_bad_stream_name_is_refused_with_the_configuration_before_the_model_compiles(tiny, tmp_path):
    """It was refused by the Pipeline, after the model had compiled and the live view had started listening."""
    with pytest.raises(ConfigError, match="--name: stream name 'a b': use letters"):
        from_flags(str(tiny), "--source", "synth://conveyor", "--name", "a b", "--device", "CPU")
    with pytest.raises(ConfigError, match=r"p\.yaml: sources\[1\]\.name: stream name 'door/2'"):
        parse_pipeline_config({"model": str(tiny), "sources": [{"name": "door1", "url": "synth://conveyor"},
                                                               {"name": "door/2", "url": "synth://conveyor"}]},
                              tmp_path / "p.yaml", environ={})


@pytest.mark.parametrize(("name", "message"), [
    ("", "--name: expected a non-empty string"),
    ("a b", "--name: stream name 'a b': use letters, digits, '_', '.' and '-' (it names files and MQTT topics)"),
])
def test_a_bad_stream_name_names_the_name_flag(tiny, capsys, name, message):
    """`ovq run M --source V --name ''` said '--source: expected a non-empty string', and --name 'a b' '--source:
    stream name ...': the message named the flag of the source, not of the name that was wrong."""
    assert main(["run", str(tiny), "--source", "synth://conveyor", "--name", name, "--max-frames", "2", "-q"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"ovq run: error: {message}"]


FIRST = "start it with a letter, digit or '_' (it names files and MQTT topics, and is typed in shells)"


@pytest.mark.parametrize(("name", "problem"), [
    ("-cam", f"stream name '-cam': starts with '-'; {FIRST}"),  # taken as --name's value: files x_-cam.mp4
    ("--cam", f"stream name '--cam': starts with '-'; {FIRST}"),
    ("..", f"stream name '..': starts with '.'; {FIRST}"),  # files x_...mp4, MQTT topic ovq/..
    (".hidden", f"stream name '.hidden': starts with '.'; {FIRST}"),
])
def test_a_stream_name_starting_with_a_dash_or_dot_is_refused_by_the_flag_and_the_file_alike(tiny, tmp_path, capsys,
                                                                                             name, problem):
    """`--name -cam` was taken (a value starting with '-' is read as the flag's value since a recent change), and so was
    `name: -cam` in a file: the files became x_-cam.mp4 and the summary line '-cam: 30 fps'. A name now starts with a
    letter, a digit or '_', from the flag, the file and the API alike."""
    argv = ["run", str(tiny), "--source", "synth://conveyor", "--source", "synth://conveyor", "--name", name,
            "--name", "b", "--out", str(tmp_path / "x.mp4"), "--max-frames", "2", "-q"]
    if name.startswith("--"):
        argv[argv.index("--name")] = f"--name={name}"
        argv.remove(name)
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"ovq run: error: --name: {problem}"]
    with pytest.raises(ConfigError) as err:
        parse_pipeline_config({"model": str(tiny), "sources": [{"name": name, "url": "synth://conveyor"}]},
                              tmp_path / "p.yaml", environ={})
    assert str(err.value) == f"{tmp_path / 'p.yaml'}: sources[0].name: {problem}"
    from ovq.streaming.pipeline import Pipeline

    with pytest.raises(ConfigError) as err:
        Pipeline(None, ["synth://conveyor"], names=[name])
    assert str(err.value) == problem
    assert not list(tmp_path.iterdir())


def test_stream_names_may_hold_dashes_and_dots_after_their_first_character(tiny, tmp_path):
    cfg = parse_pipeline_config({"model": str(tiny), "sources": [{"name": n, "url": "synth://conveyor"} for n in
                                                                 ("cam-1.left", "_x", "2-b")]}, tmp_path / "p.yaml")
    assert [s.name for s in cfg.sources] == ["cam-1.left", "_x", "2-b"]


def test_a_repeated_stream_name_names_the_name_flag(tiny, capsys):
    """`ovq run M --source V --source W --name a --name a` said "--source: source name 'a' is used twice": the
    sources were fine, the second --name was not."""
    argv = ["run", str(tiny), "--source", "synth://conveyor", "--source", "synth://conveyor", "--name", "a",
            "--name", "a", "--max-frames", "2", "-q"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["ovq run: error: --name: source name 'a' is used twice"]


@pytest.mark.parametrize(("flag", "key"), [("--out", "--out"), ("--jsonl", "--jsonl"), ("--summary-json", "--summary-json"),
                                         ("yaml", "sinks.video")])
def test_an_output_that_is_the_source_video_is_refused(tiny, tmp_path, capsys, monkeypatch, flag, key):
    """`ovq run M --source v.mp4 --out v.mp4` replaced the video being read with the annotated one ('wrote v.mp4 (3
    frames)', exit 0: the source was gone); --jsonl v.mp4 replaced it with JSON Lines records, --summary-json v.mp4
    with the summary; a pipeline file's sinks the same."""
    import cv2

    video = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    before = video.read_bytes()
    monkeypatch.chdir(tmp_path)
    if flag == "yaml":
        (tmp_path / "p.yaml").write_text(f"model: {tiny}\nsources: [v.mp4]\nmax_frames: 3\nsinks: {{video: ./v.mp4}}\n")
        argv, where = ["pipeline", "p.yaml"], f"p.yaml: {key}: v.mp4"
    else:
        argv, where = ["run", str(tiny), "--source", "v.mp4", "--max-frames", "3", flag, "v.mp4"], f"{key}: v.mp4"
    assert main([*argv, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"ovq {argv[0]}: error: {where}: the video source v.mp4 is read from it; writing there would "
                   "replace the input (give another file)")]
    assert video.read_bytes() == before


def _small_video(path: Path) -> bytes:
    import cv2

    writer = cv2.VideoWriter(str(path.with_suffix(".mp4")), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    path.with_suffix(".mp4").rename(path)  # OpenCV picks its container by the suffix; a reader goes by the bytes
    return path.read_bytes()


REPLACE = "writing there would replace the input (give another file)"


@pytest.mark.parametrize(("sources", "flags", "said"), [
    (["cam_a.mp4", "cam_b.mp4"], "--name a --name b --out cam.mp4",
     f"--out: cam.mp4: the video source a (cam_a.mp4) is stream a's file of it; {REPLACE}"),
    (["out_s0.mp4", "synth://conveyor"], "--out out.mp4",
     f"--out: out.mp4: the video source out_s0.mp4 is stream s0's file of it; {REPLACE}"),
    ([".out.partial.mp4"], "--out out.mp4",
     f"--out: out.mp4: the video source .out.partial.mp4 is where out.mp4 is written until it is finished; {REPLACE}"),
    (["cam.20261203T063000Z.mp4"], "--out cam.mp4 --segment 1m --keep 1",
     ("--out: cam.mp4: the video source cam.20261203T063000Z.mp4 is a file of its series cam.*.mp4; --keep 1 would "
      "delete the input (give another file)")),
    (["det.20261203T063000Z.jsonl"], "--jsonl det.jsonl --jsonl-rotate 1h --jsonl-keep 2",
     ("--jsonl: det.jsonl: the video source det.20261203T063000Z.jsonl is a file of its series det.*.jsonl; "
      "--jsonl-keep 2 would delete the input (give another file)")),
    (["cam.20261203T063000Z.mp4"], "yaml",
     ("p.yaml: sinks.video: cam.mp4: the video source cam.20261203T063000Z.mp4 is a file of its series cam.*.mp4; "
      "sinks.video.keep 1 would delete the input (give another file)")),
    (["cam.20261203T063000Z.mp4"], "--out cam.mp4 --segment 1m", None),
], ids=["named streams", "stream s0", "file in progress", "segment keep", "jsonl keep", "yaml segment keep",
        "segment without keep"])
def test_an_output_named_after_its_path_that_is_the_source_is_refused(tiny, tmp_path, capsys, monkeypatch, sources,
                                                                      flags, said):
    """The check of 089ca27 compared each output's path itself with the sources, and missed the files a sink names
    after it: `--source cam_a.mp4 --source cam_b.mp4 --name a --name b --out cam.mp4` replaced both sources with
    their annotated videos ('wrote cam_a.mp4 (30 frames)', exit 0); `--source .out.partial.mp4 --out out.mp4` (the
    file a failed run says its frames are in) wrote over the video it was reading; `--keep 1` deleted a source
    named as one of the --out series (cam.20261203T063000Z.mp4), `--jsonl-keep` one of the JSON Lines series. A
    new segment replaces no file, so without keep the source stays and the run goes on."""
    monkeypatch.chdir(tmp_path)
    before = {name: _small_video(tmp_path / name) for name in sources if "://" not in name}
    if flags == "yaml":
        (tmp_path / "p.yaml").write_text(f"model: {tiny}\nsources: [{sources[0]}]\nmax_frames: 3\n"
                                         "sinks: {video: {path: cam.mp4, segment: 1m, keep: 1}}\n")
        argv = ["pipeline", "p.yaml"]
    else:
        argv = ["run", str(tiny), *[a for src in sources for a in ("--source", src)], "--max-frames", "3",
                "--no-progress", *flags.split()]
    code = main([*argv, "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    if said is None:
        assert code == 0, err
    else:
        assert (code, err) == (2, [f"ovq {argv[0]}: error: {said}"])
        assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".yaml") == sorted(before)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before


@pytest.mark.parametrize(("argv", "where", "what", "replaced"), [
    (["run", "m", "--jsonl", "m/model.xml"], "--jsonl: m/model.xml", "the model m", "m/model.xml"),
    (["run", "m/model.xml", "--jsonl", "m/model.bin"], "--jsonl: m/model.bin", "the model m/model.xml", "m/model.bin"),
    (["run", "m", "--summary-json", "m/model.xml"], "--summary-json: m/model.xml", "the model m", "m/model.xml"),
    (["pipeline", "p.yaml"], "p.yaml: sinks.jsonl: p.yaml", "the pipeline file", "p.yaml"),
    (["pipeline", "q.yaml"], "q.yaml: sinks.jsonl: int8/model.xml", "the model int8", "int8/model.xml"),
], ids=["run-model-folder", "run-model-bin", "summary-json", "pipeline-file", "quantized-model"])
def test_an_output_that_is_the_model_or_the_pipeline_file_is_refused(tiny, tmp_path, capsys, monkeypatch, argv,
                                                                     where, what, replaced):
    """`ovq run m --jsonl m/model.xml` wrote its records over the model it ran ('wrote m/model.xml (3 records)', exit
    0: the next run said 'not a valid IR .xml file'), and a pipeline file's sinks.jsonl naming the file itself
    replaced the pipeline with JSON Lines."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny.parent, "m")
    shutil.copytree(tiny.parent, "int8")
    Path("p.yaml").write_text("model: m\nsources: [synth://conveyor]\nmax_frames: 3\nsinks: {jsonl: p.yaml}\n")
    Path("q.yaml").write_text("model: m\nsources: [synth://conveyor]\nmax_frames: 3\nsinks: {jsonl: int8/model.xml}\n"
                              "quantize: {data: m, output: int8}\n")
    before = Path(replaced).read_bytes()
    if argv[0] == "run":
        argv = [*argv[:2], "--source", "synth://conveyor", "--max-frames", "3", *argv[2:]]
    assert main([*argv, "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [(f"ovq {argv[0]}: error: {where}: {what} is read from it; writing there would replace the input "
                    "(give another file)")]
    assert Path(replaced).read_bytes() == before


@pytest.mark.parametrize("flag", ["--jsonl", "--summary-json"])
def test_an_output_that_is_an_image_of_a_folder_source_is_refused(tiny, tmp_path, capsys, monkeypatch, flag):
    """`ovq run M --source imgs --jsonl imgs/a.png` wrote its records over an image it had read ('wrote imgs/a.png
    (2 records)', exit 0)."""
    from conftest import random_images

    monkeypatch.chdir(tmp_path)
    random_images(Path("imgs"), n=2)
    before = Path("imgs/0.png").read_bytes()
    assert main(["run", str(tiny), "--source", "imgs", flag, "imgs/0.png", "-q"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [(
        f"ovq run: error: {flag}: imgs/0.png: an image of the source imgs is read from it; writing there would "
        "replace the input (give another file)")]
    assert Path("imgs/0.png").read_bytes() == before


def test_summary_json_and_wrote_lines(tiny, tmp_path, capsys):
    out, jsonl, summary = tmp_path / "x.mp4", tmp_path / "x.jsonl", tmp_path / "s.json"
    argv = ["run", str(tiny), "--source", "synth://conveyor?width=96&height=64", "--device", "CPU",
            "--max-frames", "5", "--out", str(out), "--jsonl", str(jsonl), "--summary-json", str(summary), "-q"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("5 frames from 1 stream(s)")
    # auto on the CPU: resize in Python, NMS in the graph; a synth source has no video decoder
    assert lines[0].endswith(", resize in python, NMS in graph")
    assert lines[-3:] == [f"wrote {out} (5 frames)", f"wrote {jsonl} (5 records)", f"wrote {summary}"]
    assert json.loads(summary.read_text())["streams"]["s0"]["frames"] == 5


def test_two_outputs_on_one_file_are_refused_before_the_run(tiny, tmp_path, capsys, monkeypatch):
    """`--jsonl r.json --summary-json ./r.json` said "wrote" twice and kept only the summary."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "latest.jsonl").symlink_to(tmp_path / "runs" / "r.jsonl")
    run = [str(tiny), "--source", "synth://conveyor?width=96&height=64", "--max-frames", "2", "-q"]
    cases = [
        (["--jsonl", "r.json", "--summary-json", "./r.json"],
         "--summary-json ./r.json: the same file as --jsonl (one would replace the other)"),
        (["--jsonl", "latest.jsonl", "--summary-json", "runs/r.jsonl"],
         "--summary-json runs/r.jsonl: the same file as --jsonl (one would replace the other)"),
        (["--out", "v.mp4", "--jsonl", "runs/../v.mp4"],
         "--jsonl: v.mp4: the same file as the video output (one would replace the other)"),
    ]
    for argv, message in cases:
        assert main(["run", *run, *argv]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"ovq run: error: {message}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.jsonl", "runs"] and not any((tmp_path / "runs").iterdir())
    pipe = tmp_path / "p.yaml"
    pipe.write_text(f"model: {tiny}\nsources: ['synth://conveyor']\nsinks:\n  video: x.mp4\n  jsonl: {{path: x.mp4}}\n")
    with pytest.raises(ConfigError, match=f"p.yaml: sinks.jsonl: {tmp_path / 'x.mp4'}: the same file as the video output"):
        load_pipeline_config(pipe)


@pytest.mark.parametrize("resize, expected", [("graph", "graph from 768x432"), ("python", "python")])
def test_resize_and_decode_reach_the_pipeline_from_yaml_and_flags(assets, tiny, tmp_path, capsys, resize, expected):
    video = assets / "videos/one-by-one-person-detection.mp4"
    yml = parse_pipeline_config({"model": str(tiny), "sources": [str(video)], "device": "CPU", "max_frames": 3,
                                 "stats_interval": 0, "resize": resize, "decode": "software"}, tmp_path / "p.yaml",
                                environ={})
    summary = build_pipeline(yml).run()
    stolen = summary.extra.pop("steal_percent")  # the VM's host's share of the CPU during the run (None: not Linux)
    assert stolen is None or 0 <= stolen <= 100
    assert summary.extra == {"resize": expected, "decode": {"s0": "software"}, "nms": "graph"}  # auto on the CPU
    summary_json = tmp_path / "s.json"
    assert main(["run", str(tiny), "--source", str(video), "--device", "CPU", "--max-frames", "3", "--resize", resize,
                 "--decode", "software", "--summary-json", str(summary_json), "-q"]) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert head.endswith(f", resize in {expected}, NMS in graph, software video decoding"), head
    assert json.loads(summary_json.read_text())["resize"] == expected


def test_yaml_resize_and_decode_are_checked(tmp_path):
    for key, value, choices in (("resize", "gpu", "auto, python, graph"),
                                ("decode", "nvdec", "auto, software, vaapi, mfx, d3d11")):
        with pytest.raises(ConfigError) as err:
            parse_pipeline_config({"model": "m.xml", "sources": [0], key: value}, tmp_path / "p.yaml", environ={})
        assert str(err.value) == f"{tmp_path / 'p.yaml'}: {key}: expected one of {choices}, got '{value}'"


@pytest.mark.parametrize(("argv", "message"), [
    (["--jsonl", "x.jsonl", "--jsonl-rotate", "-1h"],
     "--jsonl-rotate: expected a duration (30s, 10m, 1h, or seconds) or a size (500KB, 100MB, 1GB), got '-1h'"),
    (["--out", "x.mp4", "--segment", "-10m"], "--segment: expected a duration (30s, 10m, 1h, or seconds), got '-10m'"),
    (["--stall-timeout", "-1e3"], "--stall-timeout: expected a number > 0, got -1000"),
    (["--retry-max-delay", "-inf"], "--retry-max-delay: expected a finite number, got -inf"),
    (["--conf", "-1e-3"], "--conf: expected a number >= 0 and <= 1, got -0.001"),
    (["--max-frames", "-1e3"], "argument --max-frames: invalid int value: '-1e3'"),
    (["--precision", "f64"], "argument --precision: invalid choice: 'f64' (choose from 'default', 'f32', 'bf16', 'f16')"),
    (["-q", "--jsonl", "x.jsonl", "--jsonl-rotate=-1h"],
     "--jsonl-rotate: expected a duration (30s, 10m, 1h, or seconds) or a size (500KB, 100MB, 1GB), got '-1h'"),
], ids=["rotate", "segment", "stall-timeout", "retry-max-delay", "conf", "max-frames", "choice", "equals"])
def test_a_value_that_starts_with_a_dash_is_the_flags_value(tiny, tmp_path, capsys, monkeypatch, argv, message):
    """`--jsonl-rotate -1h` printed argparse's usage block and 'expected one argument' (argparse took -1h, -1e3,
    -inf for options; only -1 and -0.5 passed), where `--jsonl-rotate=-1h` said what was wrong with the value in
    one line. Now both are one line naming the flag and the value, nothing written."""
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["run", str(tiny), "--source", "synth://conveyor", *argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"ovq run: error: {message}"]
    assert list(tmp_path.iterdir()) == []


def test_a_dash_value_joins_only_an_option_that_takes_one():
    """An option after a flag that takes a value stays an option (-v), and so does everything after `--`; a flag
    given no value still gets argparse's usage (SystemExit)."""
    args = build_parser().parse_args(["run", "m.xml", "--source", "0", "--name", "-cam", "--nireq", "-2", "-vv"])
    assert (args.name, args.nireq, args.verbose) == (["-cam"], -2, 2)
    assert build_parser().parse_args(["serve", "--grpc-port", "-5", "--", "-m.xml"]).models == ["-m.xml"]
    for flags in (["--nireq", "-v"], ["--jsonl-rotate", "--jsonl", "x"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["run", "m.xml", "--source", "0", *flags])


TWO = ["--source", "synth://conveyor?width=96&height=64", "--source", "synth://conveyor?width=96&height=64"]
BOTH = "one would replace the other (give another file)"


@pytest.mark.parametrize(("argv", "message"), [
    ([*TWO, "--out", "x.mp4", "--summary-json", "x_s0.mp4"],
     f"--summary-json: x_s0.mp4: the same file as --out x.mp4 writes (stream s0's file of it); {BOTH}"),
    ([*TWO, "--name", "a", "--name", "b", "--out", "x.webm", "--summary-json", "x_b.webm"],
     f"--summary-json: x_b.webm: the same file as --out x.webm writes (stream b's file of it); {BOTH}"),
    ([*TWO, "--out", "x.mp4", "--jsonl", "x_s1.mp4"],
     f"--jsonl: x_s1.mp4: the same file as --out x.mp4 writes (stream s1's file of it); {BOTH}"),
    ([*TWO[:2], "--out", "x.mp4", "--jsonl", ".x.partial.mp4"],
     ("--jsonl: .x.partial.mp4: the same file as --out x.mp4 writes (where x.mp4 is written until it is finished); "
      f"{BOTH}")),
    ([*TWO[:2], "--jsonl", "d.jsonl", "--jsonl-rotate", "1h", "--jsonl-keep", "2", "--summary-json",
      "d.20261203T063000Z.jsonl"],
     ("--summary-json: d.20261203T063000Z.jsonl: the same file as --jsonl d.jsonl writes (a file of its series "
      "d.*.jsonl); --jsonl-keep 2 would delete it (give another file)")),
    ([*TWO[:2], "--out", "x.mp4", "--summary-json", "x_s0.mp4"], None),  # one stream: its video is x.mp4
], ids=["summary-stream-video", "summary-named-stream", "jsonl-stream-video", "jsonl-partial", "summary-series",
        "one-stream"])
def test_an_output_that_is_a_file_another_output_names_after_its_path_is_refused(tiny, tmp_path, capsys, monkeypatch,
                                                                                 argv, message):
    """With two streams `--out x.mp4 --summary-json x_s0.mp4` wrote the summary over stream s0's video, and `--jsonl
    x_s1.mp4` the records over s1's (both 'wrote', exit 0): the checks compared the paths given, not the files the
    video sink names after its path."""
    monkeypatch.chdir(tmp_path)
    code = main(["run", str(tiny), *argv, "--max-frames", "2", "--no-progress", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    if message is None:
        assert code == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["x.mp4", "x_s0.mp4"]
        assert json.loads(Path("x_s0.mp4").read_text())["streams"]["s0"]["frames"] == 2
        return
    assert (code, err) == (2, [f"ovq run: error: {message}"])
    assert list(tmp_path.iterdir()) == []


def test_a_pipeline_files_jsonl_that_is_a_streams_video_is_refused(tmp_path):
    pipe = tmp_path / "p.yaml"
    pipe.write_text("model: m.xml\nsources: ['synth://conveyor', 'synth://conveyor']\n"
                    "sinks: {video: x.mp4, jsonl: x_s1.mp4}\n")
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(pipe)
    assert str(err.value) == (f"{pipe}: sinks.jsonl: {tmp_path / 'x_s1.mp4'}: the same file as sinks.video "
                              f"{tmp_path / 'x.mp4'} writes (stream s1's file of it); {BOTH}")


@pytest.mark.parametrize(("argv", "says"), [
    (["run", "m", "--source", "x", "--outt", "a.mp4"],
     "ovq run: error: unrecognized arguments: --outt a.mp4; did you mean --out?"),
    (["bench", "m", "--tme", "3"], "ovq bench: error: unrecognized arguments: --tme 3; did you mean --time?"),
    (["pipeline", "p.yaml", "--serve", "0"], "ovq pipeline: error: unrecognized arguments: --serve 0"),
])
def test_a_flag_the_command_does_not_take_is_named_with_the_commands_usage(capsys, argv, says):
    """It was "ovq: error: unrecognized arguments: --outt a.mp4" under ovq's top-level usage (COMMAND ...): not the
    command's own flags, nor the one meant."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and err[-1] == says and err[0].startswith(f"usage: ovq {argv[0]} ")


NOT_UTF8 = "ab\udcffcd"  # the bytes ab\xffcd, as Python reads them from the environment or the command line
UNOPENABLE = ("is not UTF-8 text; OpenCV and FFmpeg take a file name or URL as UTF-8, so it could not be opened "
              "(give UTF-8 text)")


@pytest.mark.parametrize(("source", "says"), [
    ("rtsp://u:${OVQ_TEST_PW}@127.0.0.1:1/x", f"$OVQ_TEST_PW (--source rtsp://u:***@127.0.0.1:1/x) {UNOPENABLE}"),
    ("${OVQ_TEST_PW}", f"$OVQ_TEST_PW (--source ${{OVQ_TEST_PW}}) {UNOPENABLE}"),
    ("FILE", f"--source: not UTF-8 text; {UNOPENABLE.split('; ', 1)[1]}"),
    ("p.yaml", f"p.yaml: $OVQ_TEST_PW (sources[1]) {UNOPENABLE}"),
    ("q.yaml", f"q.yaml: $OVQ_TEST_PW (sources[0].url) {UNOPENABLE}"),
], ids=["url-password", "whole-source", "file-name", "yaml", "yaml-url"])
def test_a_source_that_is_not_utf8_is_one_line_at_start_naming_the_variable(tiny, tmp_path, source, says):
    """A ${CAM_PASSWORD} holding bytes that are not UTF-8 went unchecked: a traceback in the reader thread when the
    URL was quoted, 0 frames and exit 0; a video file so named (or a ${VAR} giving one) crashed OpenCV (SIGSEGV,
    exit 139). Now one line at start naming the variable (or the flag), exit 2, the value never shown."""
    import os
    import subprocess
    import sys

    clip = tmp_path / os.fsdecode(b"c\xffr.mp4")
    clip.write_bytes(Path("/dev/null").read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVQ_")}
    env["PYTHONPATH"] = str(Path(__file__).parents[1])
    env["OVQ_TEST_PW"] = str(clip) if source.startswith("$") else NOT_UTF8
    if source.endswith(".yaml"):
        url = "rtsp://u:${OVQ_TEST_PW}@127.0.0.1:1/x"
        entry = f"['synth://conveyor', '{url}']" if source == "p.yaml" else f"[{{name: cam, url: '{url}'}}]"
        (tmp_path / source).write_text(f"model: {tiny}\nsources: {entry}\nsinks: {{jsonl: out.jsonl}}\n")
        argv = ["pipeline", source, "--max-frames", "3"]
    else:
        argv = ["run", str(tiny), "--source", str(clip) if source == "FILE" else source, "--max-frames", "3",
                "--jsonl", "out.jsonl"]
    r = subprocess.run([sys.executable, "-m", "ovq", *argv, "-q"], cwd=tmp_path, env=env, capture_output=True,
                       check=False, timeout=120)
    command = argv[0]
    assert (r.returncode, r.stderr.decode(errors="replace").splitlines()) == (2, [f"ovq {command}: error: {says}"])
    assert b"ab\xffcd" not in r.stdout + r.stderr and not (tmp_path / "out.jsonl").exists()
