"""Reference values from the `diffusers` package for the Rust diffusion crate.

    python diffusers_parity.py OUT.json

For every combination of beta schedule, timestep spacing and prediction type (plus zero-SNR
rescaling and both `set_alpha_to_one` values), records alphas_cumprod, the inference
timesteps, and the outputs of several DDIM (eta 0 and 0.7) and DDPM steps on fixed inputs with
injected noise. Everything in float64 where diffusers allows it.
"""
import json
import sys

import torch
from diffusers import DDIMScheduler, DDPMScheduler

torch.set_default_dtype(torch.float64)


class float64_tables:
    """diffusers builds its tables in float32 (`dtype=torch.float32`). Inside this block the
    name resolves to float64, so its own code computes them in double precision: steps can
    then be compared to 1e-5 even where 1 - alpha_cumprod is tiny."""

    def __enter__(self):
        self.saved = torch.float32
        torch.float32 = torch.float64

    def __exit__(self, *exc):
        torch.float32 = self.saved


def fixed(seed, shape):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64)


def main(out):
    cases = []
    shape = (2, 3, 4)
    n_steps = 10
    for sched in ["linear", "scaled_linear", "squaredcos_cap_v2"]:
        for spacing in ["leading", "trailing", "linspace"]:
            for pred in ["epsilon", "sample", "v_prediction"]:
                for rescale, alpha_one, offset in [(False, True, 0), (True, False, 1)]:
                    if rescale and (spacing != "trailing" or pred == "epsilon"):
                        # Zero terminal SNR is meant with trailing spacing, and with epsilon
                        # prediction x0 = (x - eps) / 0 at t = T-1 (Lin et al. 2023).
                        continue
                    cfg = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule=sched,
                               prediction_type=pred, clip_sample=not rescale, clip_sample_range=1.0,
                               timestep_spacing=spacing, steps_offset=offset,
                               rescale_betas_zero_snr=rescale)
                    acp_f32 = DDIMScheduler(set_alpha_to_one=alpha_one, **cfg).alphas_cumprod
                    with float64_tables():
                        ddim = DDIMScheduler(set_alpha_to_one=alpha_one, **cfg)
                        ddpm = DDPMScheduler(variance_type="fixed_small", **cfg)
                    assert ddim.alphas_cumprod.dtype == torch.float64
                    ddim.set_timesteps(n_steps)
                    ddpm.set_timesteps(n_steps)
                    steps = []
                    for i, t in enumerate(ddim.timesteps.tolist()):
                        if i not in (0, 4, n_steps - 1):
                            continue
                        sample = fixed(100 + i, shape)
                        model_out = fixed(200 + i, shape)
                        noise = fixed(300 + i, shape)
                        rec = dict(t=t, sample=sample.flatten().tolist(), model_output=model_out.flatten().tolist(),
                                   noise=noise.flatten().tolist())
                        for eta in (0.0, 0.7):
                            o = ddim.step(model_out, t, sample, eta=eta, variance_noise=noise if eta > 0 else None)
                            rec[f"ddim_eta{eta}"] = o.prev_sample.flatten().tolist()
                            rec[f"ddim_x0_eta{eta}"] = o.pred_original_sample.flatten().tolist()
                        # DDPM draws its noise from the generator: the same seed gives `noise`.
                        o = ddpm.step(model_out, t, sample, generator=torch.Generator().manual_seed(300 + i))
                        rec["ddpm"] = o.prev_sample.flatten().tolist()
                        steps.append(rec)
                    cases.append(dict(
                        config=dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule=sched,
                                    rescale_zero_terminal_snr=rescale, prediction_type=pred,
                                    clip_sample=not rescale, clip_sample_range=1.0, set_alpha_to_one=alpha_one,
                                    steps_offset=offset, timestep_spacing=spacing),
                        alphas_cumprod=acp_f32.tolist(),
                        alphas_cumprod_f64=ddim.alphas_cumprod.tolist(),
                        ddim_timesteps=ddim.timesteps.tolist(),
                        ddpm_timesteps=ddpm.timesteps.tolist(),
                        steps=steps,
                    ))
    json.dump(allow_nan=False, obj=dict(diffusers=__import__("diffusers").__version__, n_steps=n_steps, cases=cases), fp=open(out, "w"))


if __name__ == "__main__":
    main(sys.argv[1])
