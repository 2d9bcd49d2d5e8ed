def __getattr__(name):
    raise AttributeError(f"PIL.ImageOps.{name}: Pillow is not installed (ft bench shim)")
