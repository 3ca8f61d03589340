"""What the wrappers that run a model another way (GoBackwards, Reversed) share: the wrapped
model is ``.model``, and the parameters are its own."""

# the model's options and read-only properties, shared through the wrapper
_OPTIONS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
            "bidirectional", "proj_size", "reset_after", "merge_mode", "dtype", "num_directions")


class ModelWrapper:
    """Base of GoBackwards and Reversed: parameters, options, state_dict and repr of
    ``self.model``.  A parameter read or assigned through the wrapper is the model's (checked
    by it, its packed copies dropped); the wrapper's other attributes cannot be set."""

    def __init__(self, model):
        self.__dict__["model"] = model

    def __getattr__(self, name):
        model = self.__dict__.get("model")
        if model is not None and (name in _OPTIONS or name in model._shapes):
            return getattr(model, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name, value):
        if name in self.model._shapes:
            setattr(self.model, name, value)          # a parameter: checked by the model
        else:
            raise AttributeError(f"{type(self).__name__}: cannot set {name!r} (parameters "
                                 "only; the model's options are set on .model)")

    def __getstate__(self):
        return {"model": self.model}

    def __setstate__(self, state):
        self.__dict__["model"] = state["model"]

    def parameter_names(self):
        return self.model.parameter_names()

    def state_dict(self):
        return self.model.state_dict()

    def load_state_dict(self, state_dict, strict=True):
        return self.model.load_state_dict(state_dict, strict)

    def save(self, path):
        """Write the wrapped model and this wrapper to `path` (see ``fusedrnn.load``)."""
        from ._files import save
        save(self, path)

    def __repr__(self):
        return f"{type(self).__name__}({self.model!r})"
