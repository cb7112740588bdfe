"""Run lutnet.distill from Python (for machines without the hardware half installed) and print
the per-step accuracies, the device and the time:
    bench/distill_run.py TEACHER OUT DATA_DIR DEVICE EPOCHS THREADS [K [tree | local=R]]"""
import sys
import time

from lutnet.distill import DistillConfig, distill

teacher, out, data, device, epochs, threads = sys.argv[1:7]
k = int(sys.argv[7]) if len(sys.argv) > 7 else 6
shape = sys.argv[8] if len(sys.argv) > 8 else ""
tree = shape == "tree"
local = float(shape.removeprefix("local=")) if shape.startswith("local=") else None
t0, c0 = time.perf_counter(), time.process_time()
s = distill(teacher, out, DistillConfig(k=k, tree=tree, local=local, group=50, finetune_epochs=int(epochs),
                                        threads=int(threads), device=device, data_dir=data), progress=False)
print(f"K={k} {shape} device {s['device']}: student {100 * s['test_accuracy']:.2f} % in "
      f"{time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU")
