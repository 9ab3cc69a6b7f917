"""The shared helpers: the CPU's bfloat16 flags, the choice of device, and one-line command-line errors."""
import pytest
import torch

from utils import UserError, choose_device, cpu_has_bf16


def test_cpu_has_bf16_reads_the_kernels_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert cpu_has_bf16(info) is False
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert cpu_has_bf16(info) is True
    info.write_text("Features\t: fp asimd bf16\n")  # Arm
    assert cpu_has_bf16(info) is True
    assert cpu_has_bf16(tmp_path / "missing") is None


def test_choose_device_refuses_cuda_it_cannot_give(monkeypatch):
    assert choose_device(False, 3) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA device"):
        choose_device(True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert choose_device(True, 1) == torch.device("cuda", 1)
    with pytest.raises(UserError, match="has 2, so its process 2 has none: start at most --nproc_per_node=2"):
        choose_device(True, 2)  # torchrun --nproc_per_node=3 on a 2-GPU machine


def test_a_slip_on_the_command_line_gets_the_nearest_valid_flags_or_subcommand(capsys):
    import main
    import super_resolve
    for parser, argv, hint in [(main.build_parser(), ["train", "--num-epochs", "2"], "did you mean --num-epoch"),
                               (main.build_parser(), ["trian"], "did you mean train?"),
                               (main.build_parser(), ["train", "--learning-rate=1"], None),
                               (super_resolve.build_parser(), ["x.png", "--formt", "png"], "did you mean --format?")]:
        with pytest.raises(SystemExit) as e:
            parser.parse_args(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and err.endswith("(see --help)\n"), err
        assert (hint in err) if hint else "did you mean" not in err, err
    assert super_resolve.build_parser().parse_args(["x.png", "--format", "jpg"]).format == "jpg"  # an alias
