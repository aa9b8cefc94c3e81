r"""The same GAN iterations in PyTorch (eager), for the JAX-vs-PyTorch table of BENCHMARKS.md.

  python benchmarks/torch_reference.py --json_out=/tmp/torch_steps.json
  python benchmarks/compare.py                      # runs both frameworks and prints the ratios

Benchmark-only: PyTorch is not a jaxgan dependency and is imported inside the
functions, so nothing else in the repository needs it (see benchmarks/README.md).

The networks are layer-for-layer the jaxgan ones (`bench_common` describes the
cases): the Radford DCGAN generator (projection of z, which is PyTorch's
ConvTranspose2d(nz, C, base) on a 1x1 input, then 4x4 stride-2 transposed
convolutions with BatchNorm and ReLU, tanh output) and discriminator (4x4
stride-2 convolutions, BatchNorm from the second on, LeakyReLU(0.2), a
base x base convolution to the logit), N(0, 0.02) weights; the WGAN-GP critic
is that discriminator without BatchNorm. The loops follow pytorch/examples
``dcgan/main.py``: one fake batch per iteration, D on real then on
``fake.detach()`` (BCE on logits), G on the same fake through D with label
"real"; Adam(2e-4, 0.5, 0.999), ``cudnn.benchmark = True``. WGAN-GP: 5 critic
updates, each on its own real batch and a fresh fake batch drawn without a
graph, the penalty through ``torch.autograd.grad(..., create_graph=True)``
(Gulrajani et al., 2017, Algorithm 1), then one G update; Adam(1e-4, 0, 0.9).
bfloat16 runs under ``torch.autocast(dtype=torch.bfloat16)`` with float32
parameters and optimiser state, like jaxgan's policy. The timed loop has no
``.item()`` or other host synchronisation; CUDA is synchronised once at the
end of each timed block (``--repeats`` blocks of ``--steps`` iterations; the
median block counts).
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common as bc  # noqa: E402


def _torch():
  try:
    import torch
  except ImportError:
    raise SystemExit(
      "error: PyTorch is not installed; it is benchmark-only, see benchmarks/README.md (pip install torch)"
    ) from None
  return torch


def _dcgan_init(module) -> None:
  torch = _torch()
  for m in module.modules():
    if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
      torch.nn.init.normal_(m.weight, 0.0, 0.02)
      if m.bias is not None:
        torch.nn.init.zeros_(m.bias)
    elif isinstance(m, torch.nn.BatchNorm2d):
      torch.nn.init.normal_(m.weight, 1.0, 0.02)
      torch.nn.init.zeros_(m.bias)


def _stages(image_size: int) -> tuple[int, int]:
  """(base, n) with image_size = base * 2**n, the rule of jaxgan.models.layers.radford_base_size."""
  min_base = 4 if image_size >= 16 else 2
  size, n = image_size, 0
  while size % 2 == 0 and size // 2 >= min_base:
    size //= 2
    n += 1
  return size, n


def make_generator(case: bc.Case):
  nn = _torch().nn
  base, n = _stages(case.image_size)
  ch = case.width * 2 ** (n - 1)
  layers = [nn.ConvTranspose2d(case.latent_dim, ch, base, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
  for k in range(1, n):
    out = case.width * 2 ** (n - 1 - k)
    layers += [nn.ConvTranspose2d(ch, out, 4, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(True)]
    ch = out
  layers += [nn.ConvTranspose2d(ch, case.channels, 4, 2, 1, bias=True), nn.Tanh()]
  net = nn.Sequential(*layers)
  _dcgan_init(net)
  return net


def make_discriminator(case: bc.Case, batch_norm: bool):
  nn = _torch().nn
  base, n = _stages(case.image_size)
  layers, ch = [], case.channels
  for i in range(1, n + 1):
    out = case.width * 2 ** (i - 1)
    norm = batch_norm and i > 1
    layers.append(nn.Conv2d(ch, out, 4, 2, 1, bias=not norm))
    if norm:
      layers.append(nn.BatchNorm2d(out))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    ch = out
  layers += [nn.Conv2d(ch, 1, base, 1, 0, bias=True), nn.Flatten(0)]
  net = nn.Sequential(*layers)
  _dcgan_init(net)
  return net


def bench_case(case: bc.Case, num_steps: int, warmup: int, device: str, repeats: int = 1) -> dict:
  """Times ``repeats`` blocks of ``num_steps`` eager PyTorch iterations of ``case`` after ``warmup`` ones."""
  torch = _torch()
  torch.manual_seed(0)
  dev = torch.device(device)
  opt = bc.OPTIMIZERS[case.model]
  netG = make_generator(case).to(dev)
  netD = make_discriminator(case, batch_norm=case.model == "dcgan").to(dev)
  optG = torch.optim.Adam(netG.parameters(), lr=opt["lr"], betas=(opt["b1"], opt["b2"]))
  optD = torch.optim.Adam(netD.parameters(), lr=opt["lr"], betas=(opt["b1"], opt["b2"]))
  real = torch.rand(case.n_critic, case.batch_size, case.channels, case.image_size, case.image_size, device=dev) * 2 - 1
  bs, nz = case.batch_size, case.latent_dim
  autocast = torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=case.precision == "bfloat16")
  criterion = torch.nn.BCEWithLogitsLoss()
  ones = torch.ones(bs, device=dev)
  zeros = torch.zeros(bs, device=dev)

  def dcgan_iteration():
    netD.zero_grad(set_to_none=True)
    with autocast:
      err_real = criterion(netD(real[0]).float(), ones)
    err_real.backward()
    noise = torch.randn(bs, nz, 1, 1, device=dev)
    with autocast:
      fake = netG(noise)
      err_fake = criterion(netD(fake.detach()).float(), zeros)
    err_fake.backward()
    optD.step()
    netG.zero_grad(set_to_none=True)
    with autocast:
      err_g = criterion(netD(fake).float(), ones)
    err_g.backward()
    optG.step()
    return err_real + err_fake, err_g

  def wgan_gp_iteration():
    for i in range(case.n_critic):
      netD.zero_grad(set_to_none=True)
      with torch.no_grad(), autocast:
        fake = netG(torch.randn(bs, nz, 1, 1, device=dev))
      fake = fake.float()
      eps = torch.rand(bs, 1, 1, 1, device=dev)
      interp = (eps * real[i] + (1 - eps) * fake).requires_grad_(True)
      with autocast:
        d_real = netD(real[i]).float().mean()
        d_fake = netD(fake).float().mean()
        d_interp = netD(interp).float()
      grads = torch.autograd.grad(d_interp.sum(), interp, create_graph=True)[0]
      gp = ((grads.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
      err_d = d_fake - d_real + bc.GP_WEIGHT[case.model] * gp
      err_d.backward()
      optD.step()
    netG.zero_grad(set_to_none=True)
    with autocast:
      err_g = -netD(netG(torch.randn(bs, nz, 1, 1, device=dev))).float().mean()
    err_g.backward()
    optG.step()
    return err_d, err_g

  iteration = dcgan_iteration if case.model == "dcgan" else wgan_gp_iteration

  def sync():
    if dev.type == "cuda":
      torch.cuda.synchronize()

  for _ in range(warmup):
    iteration()
  sync()
  walls, cpus = [], []
  for _ in range(repeats):
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(num_steps):
      losses = iteration()
    sync()
    walls.append(time.perf_counter() - wall)
    cpus.append(time.process_time() - cpu)
  finite = all(bool(torch.isfinite(x.detach()).all()) for x in losses)
  return {
    "model": case.model,
    "precision": case.precision,
    "batch_size": case.batch_size,
    "image_size": case.image_size,
    "width": case.width,
    "channels": case.channels,
    "latent_dim": case.latent_dim,
    "n_critic": case.n_critic,
    "steps": num_steps,
    "warmup": warmup,
    **bc.timing_fields(case, walls, cpus, num_steps),
    "finite": finite,
  }


COLUMNS = [
  ("model", "model", "s"),
  ("precision", "precision", "s"),
  ("batch", "batch_size", "d"),
  ("ms/iter", "ms_per_iter", ".2f"),
  ("CPU ms/iter", "cpu_ms_per_iter", ".2f"),
  ("G it/s", "gen_iters_per_s", ".1f"),
  ("images/s", "images_per_s", ".0f"),
]


def run(cfg: dict, device: str) -> dict:
  torch = _torch()
  if device == "cuda":
    torch.backends.cudnn.benchmark = True
  results = []
  for case in bc.cases(cfg):
    r = bench_case(case, cfg["steps"], cfg["warmup"], device, cfg["repeats"])
    results.append(r)
    print(
      f"  torch {case.model} {case.precision} batch {case.batch_size}: {r['ms_per_iter']:.2f} ms/iter, "
      f"{r['images_per_s']:.0f} images/s",
      flush=True,
    )
  kind = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
  meta = {
    "framework": "torch",
    "torch": torch.__version__,
    "device": device,
    "device_kind": kind,
    "num_threads": torch.get_num_threads(),
    "cudnn_benchmark": device == "cuda",
    **bc.host_meta(),
  }
  return {"meta": meta, "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}, "cases": results}


def main(argv=None) -> None:
  parser = bc.make_parser(__doc__.splitlines()[0])
  parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
  args = parser.parse_args(argv)
  torch = _torch()
  device = args.device
  if device == "auto":
    device = "cuda" if torch.cuda.is_available() else "cpu"
  if device == "cuda" and not torch.cuda.is_available():
    raise SystemExit("error: --device=cuda but this PyTorch build sees no CUDA device")
  cfg = bc.resolve(args, has_gpu=device == "cuda")
  report = run(cfg, device)
  print(f"\nPyTorch {torch.__version__} eager reference: {cfg['mode']} mode on {report['meta']['device_kind']}")
  print(bc.format_table(report["cases"], COLUMNS))
  bc.write_json(args.json_out, report)


if __name__ == "__main__":
  main()
