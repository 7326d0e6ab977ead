"""A method bound to one instance, as patch() installs them: callable like a
bound method (__self__, __func__, __name__, __doc__), and picklable, so that a
patched diffusion survives pickle, torch.save and spawn-based multiprocessing.

(A types.MethodType in an instance's __dict__ pickles as getattr(instance,
name), which runs while the instance is still empty on unpickling, so it
finds the unpatched class's method, or none. This pickles as its function,
found by its qualified name, and the instance, which pickle builds once.)
"""


class BoundMethod:
    __slots__ = ("__self__", "__func__")

    def __init__(self, instance, function):
        self.__self__ = instance
        self.__func__ = function

    def __call__(self, *args, **kwargs):
        return self.__func__(self.__self__, *args, **kwargs)

    @property
    def __name__(self):
        return self.__func__.__name__

    @property
    def __doc__(self):
        return self.__func__.__doc__

    @property
    def __wrapped__(self):  # inspect.signature: the function's, without self
        return self.__func__.__get__(self.__self__)

    def __repr__(self):
        return (f"<torch_ddpm bound method {self.__func__.__qualname__} of "
                f"{type(self.__self__).__name__} object>")

    def __reduce__(self):
        return BoundMethod, (self.__self__, self.__func__)


def bind(instance, name, function):
    """Installs function as instance.name, bound to instance."""
    setattr(instance, name, BoundMethod(instance, function))
