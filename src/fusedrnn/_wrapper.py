"""What the wrappers that run a model another way (GoBackwards, Reversed) share: the wrapped
model is ``.model``, and the parameters are its own."""


class ModelWrapper:
    """Base of GoBackwards and Reversed: parameters, state_dict and repr of ``self.model``."""

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
