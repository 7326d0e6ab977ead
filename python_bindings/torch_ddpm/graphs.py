"""Whole sampling loops as CUDA graphs: captured once, replayed for new noise.

A sampling loop of a few hundred small steps spends its time on the host
(Python, the dispatcher, a launch per kernel). Captured as one CUDA graph, a
replay launches the whole loop at once. The ddpm operators need no host
synchronization and draw in-kernel noise from a torch.Generator graph-safely
(each replay draws anew), so a loop of them, with a model that is capturable
too, can be one graph:

    loop = torch_ddpm.GraphedLoop(lambda latents: my_loop(unet, scheduler, latents),
                                  generators=[generator])
    images = loop(latents)      # first call with these shapes: capture, then replay

The drop-in's `p_sample_loop(..., cuda_graph=True)` / `ddim_sample_loop` and the
lucidrains patch's `sample(..., cuda_graph=True)` use it.

What capture needs (else a clear error, never a silent wrong answer): CUDA
tensors; a loop that never reads a device value on the host, runs no CPU work
whose result it uses, and allocates the same way on each call; random numbers
drawn on the GPU from the default CUDA generator or from the generators given
here (a CPU generator's draws would be fixed in the graph). The loop runs once
before capture (warm-up, on a side stream, as CUDA graphs ask), with every
generator's state put back afterwards, so that the first replay draws what an
eager run from the same state draws; a model whose state changes when it runs
(batch norm in training mode) changes in that warm-up too.
"""
import weakref

import torch

__all__ = ["GraphedLoop", "release"]

# The loops captured for an object (a diffusion), by their settings; held
# weakly by the object, so that pickling or freeing it is unaffected.
_BY_OWNER = weakref.WeakKeyDictionary()


def graphed_for(owner, key, make):
    """owner's GraphedLoop for key, made by make() on first use."""
    try:
        hash(key)
    except TypeError as error:
        raise ValueError("cuda_graph=True: a graph is kept per setting, so each model keyword "
                         "argument must be a tensor (an input of the graph) or a hashable value "
                         f"(fixed in it): {error}") from None
    loops = _BY_OWNER.setdefault(owner, {})
    loop = loops.get(key)
    if loop is None:
        loop = loops[key] = make()
    return loop


def release(owner):
    """Frees the CUDA graphs kept for owner (a diffusion, a scheduler): the next
    cuda_graph=True call captures anew. They are freed with owner, too."""
    _BY_OWNER.pop(owner, None)


def memory_key(*modules):
    """Where each module's parameters and buffers lie: a graph reads them there,
    so one captured before a module was moved or cast must not be replayed."""
    key = []
    for module in modules:
        if isinstance(module, torch.nn.Module):
            key.extend((t.data_ptr(), t.dtype) for t in module.parameters())
            key.extend((t.data_ptr(), t.dtype) for t in module.buffers())
        else:
            key.append(id(module))
    return tuple(key)


class _Capture:
    __slots__ = ("graph", "inputs", "outputs", "as_tuple")


class _CudaGraphs:
    """What GraphedLoop asks of CUDA, in one place: the tests put a host
    emulation in its place (runtime below) to run the capture logic on a CPU."""

    device_type = "cuda"

    @staticmethod
    def default_generator(device):
        return torch.cuda.default_generators[device.index]

    @staticmethod
    def warm_up(device, fn, inputs):
        # on a side stream: lazy initializations (cuBLAS handles, caches,
        # autotuning) happen outside the capture
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            fn(*inputs)
        torch.cuda.current_stream(device).wait_stream(side)

    @staticmethod
    def capture(fn, inputs, generators):
        """(graph, fn's result as captured)"""
        graph = torch.cuda.CUDAGraph()
        for g in generators:
            graph.register_generator_state(g)
        with torch.cuda.graph(graph):
            return graph, fn(*inputs)

    @staticmethod
    def replay(graph):
        graph.replay()


runtime = _CudaGraphs


class GraphedLoop:
    """fn(*tensors) -> a tensor or a tuple of tensors, captured as a CUDA graph
    on its first call with inputs of given shapes, dtypes and devices, and
    replayed on later calls with such inputs (copied into the graph's own
    input buffers). Each call returns new tensors (copies of the graph's
    outputs, which the next replay overwrites).

    generators: the torch.Generators the loop draws from besides the device's
    default one (registered with the graph, so that each replay advances them
    as an eager run would). device: the CUDA device, where no input or
    generator says it. keep: tensors the loop reads that it did not make
    (schedule tables, say), held as long as the graph."""

    def __init__(self, fn, generators=(), device=None, keep=()):
        self.fn = fn
        self.device = None if device is None else torch.device(device)
        # what the graph reads that is not its own memory (tables, timesteps):
        # kept alive with it
        self.keep = tuple(keep)
        self.generators = tuple(generators)
        for g in self.generators:
            if not isinstance(g, torch.Generator) or g.device.type != runtime.device_type:
                raise ValueError(f"GraphedLoop: generators must be CUDA torch.Generators, got {g!r} "
                                 "(a CPU generator's draws would be fixed in the graph)")
        self._captures = {}

    def __call__(self, *tensors):
        key = tuple((tuple(t.shape), t.dtype, t.device) for t in tensors)
        capture = self._captures.get(key)
        if capture is None:
            capture = self._captures[key] = self._capture(tensors)
        for static, given in zip(capture.inputs, tensors):
            static.copy_(given)
        runtime.replay(capture.graph)
        outputs = tuple(out.clone() for out in capture.outputs)
        return outputs if capture.as_tuple else outputs[0]

    def _capture(self, tensors):
        device = _device_of(tensors, self.generators, self.device)
        capture = _Capture()
        capture.inputs = [t.detach().clone() for t in tensors]
        default = runtime.default_generator(device)
        generators = [default] + [g for g in self.generators if g is not default]
        states = [g.get_state() for g in generators]
        runtime.warm_up(device, self.fn, capture.inputs)
        for g, state in zip(generators, states):
            g.set_state(state)
        try:
            # (the device's default generator is the graph's already)
            capture.graph, result = runtime.capture(self.fn, capture.inputs, generators[1:])
        except RuntimeError as error:
            raise RuntimeError(
                "the sampling loop could not be captured as a CUDA graph (" + str(error).strip()
                + "); a loop that reads a device value on the host, or whose model does, "
                "cannot be: run it without the CUDA graph") from error
        capture.as_tuple = isinstance(result, tuple)
        capture.outputs = result if capture.as_tuple else (result,)
        return capture


def _device_of(tensors, generators, device=None):
    devices = {t.device for t in tensors} | {g.device for g in generators}
    if device is not None:
        devices.add(device)
    if not devices and runtime.device_type == "cuda":
        devices = {torch.device("cuda", torch.cuda.current_device())}
    if len(devices) != 1 or next(iter(devices)).type != runtime.device_type:
        raise ValueError(f"GraphedLoop: inputs and generators on one CUDA device, got "
                         f"{sorted(str(d) for d in devices)}")
    device = next(iter(devices))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def check_graphable(what, device, progress=False, callbacks=(), philox=None):
    """The reasons a sampling loop cannot be one CUDA graph, raised by name
    before anything runs: what: the method, for messages."""
    if torch.device(device).type != runtime.device_type:
        raise ValueError(f"{what}(cuda_graph=True): CUDA graphs need a CUDA device, got {device}")
    if progress:
        raise ValueError(f"{what}(cuda_graph=True): a progress bar cannot advance inside a graph "
                         "replay: pass progress=False")
    for name, fn in callbacks:
        if fn is not None:
            raise ValueError(f"{what}(cuda_graph=True): {name} runs Python between the steps, "
                             "which a graph replay does not: pass it None, or cuda_graph=False")
    if philox is not None and not isinstance(philox, torch.Generator) and \
            getattr(philox, "generator", None) is None:
        raise ValueError(f"{what}(cuda_graph=True): philox={philox!r} is an integer key, which "
                         "would be fixed in the graph (every replay the same noise): pass a "
                         "CUDA torch.Generator as philox")
