import torch

from voxuda_cli.device import free_memory_gib


def test_free_memory_on_the_cpu_is_a_positive_figure_below_the_machines_total() -> None:
    free = free_memory_gib(torch.device("cpu"))
    assert free is not None and 0 < free
    with open("/proc/meminfo", encoding="utf-8") as meminfo:
        total_gib = int(meminfo.readline().split()[1]) / 2**20  # MemTotal is the first line
    assert free <= total_gib
