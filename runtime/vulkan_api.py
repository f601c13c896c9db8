"""The Vulkan loader, one instance per process, and its physical devices.

The PyPI `vulkan` package (cffi over the system's libvulkan.so.1) is optional: without the
package or without a loader, `vk` is None, graphc imports and the OpenCL backend works;
Vulkan devices are simply not listed. Mesa's loader wants $XDG_RUNTIME_DIR: a private
folder under /tmp is set where it is unset.

Validation: with VK_INSTANCE_LAYERS naming VK_LAYER_KHRONOS_validation (the loader enables
the layer) or GRAPHC_VULKAN_VALIDATION=1 (graphc asks for it), a debug-utils messenger
collects every warning and error message of the layer in `validation_messages()`; with
GRAPHC_VULKAN_VALIDATION=gpu the layer's GPU-assisted validation is on too (it checks the
shaders' buffer accesses).
"""
from __future__ import annotations

import functools
import os
import tempfile
import threading
from typing import Any

from .errors import DeviceError

VALIDATION_LAYER = "VK_LAYER_KHRONOS_validation"
VALIDATION_ENV = "GRAPHC_VULKAN_VALIDATION"
INSTALL_HINT = ("install a Vulkan driver and loader (`apt-get install libvulkan1 "
                "mesa-vulkan-drivers glslang-tools`: lavapipe, a CPU device) and "
                "`pip install graphc[vulkan]`")


def _ensure_runtime_dir() -> None:
    """Mesa's WSI code complains (and some loaders fail) without $XDG_RUNTIME_DIR."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    path = os.path.join(tempfile.gettempdir(), f"graphc-xdg-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = path
    except OSError:
        pass


vk: Any
try:
    _ensure_runtime_dir()
    import vulkan as vk
except (ImportError, OSError):     # OSError: the package is there but libvulkan.so.1 is not
    vk = None

_messages: list[str] = []
_messages_lock = threading.Lock()


def require_vk() -> Any:
    """The `vulkan` module, or DeviceError when it cannot be loaded."""
    if vk is None:
        raise DeviceError(f"the Vulkan backend is not available; {INSTALL_HINT}")
    return vk


def validation_messages() -> list[str]:
    """Every validation message collected so far (a copy)."""
    with _messages_lock:
        return list(_messages)


def clear_validation_messages() -> None:
    with _messages_lock:
        _messages.clear()


def validation_requested() -> bool:
    """Is the validation layer on (through the loader's environment or graphc's)?"""
    layers = os.environ.get("VK_INSTANCE_LAYERS", "") + ":" + \
        os.environ.get("VK_LOADER_LAYERS_ENABLE", "")
    return VALIDATION_LAYER in layers or bool(os.environ.get(VALIDATION_ENV, ""))


class Instance:
    """The process's VkInstance and, under validation, its debug messenger."""

    def __init__(self) -> None:
        v = require_vk()
        layers = _instance_layers()
        extensions = _instance_extensions() | (_instance_extensions(VALIDATION_LAYER)
                                               if VALIDATION_LAYER in layers else set())
        validate = validation_requested() and VALIDATION_LAYER in layers
        enabled_ext = [e for e in ("VK_EXT_debug_utils", "VK_EXT_validation_features")
                       if validate and e in extensions]
        enabled_layers = [VALIDATION_LAYER] if validate and os.environ.get(VALIDATION_ENV) \
            else []
        app = v.VkApplicationInfo(pApplicationName="graphc", applicationVersion=1,
                                  pEngineName="graphc", engineVersion=1,
                                  apiVersion=v.VK_MAKE_VERSION(1, 3, 0))
        pnext = None
        features = _validation_features(v)
        if validate and features and "VK_EXT_validation_features" in enabled_ext:
            pnext = v.VkValidationFeaturesEXT(enabledValidationFeatureCount=len(features),
                                              pEnabledValidationFeatures=features)
        info = v.VkInstanceCreateInfo(pNext=pnext, pApplicationInfo=app,
                                      enabledLayerCount=len(enabled_layers),
                                      ppEnabledLayerNames=enabled_layers or None,
                                      enabledExtensionCount=len(enabled_ext),
                                      ppEnabledExtensionNames=enabled_ext or None)
        try:
            self.handle = v.vkCreateInstance(info, None)
        except v.VkError as err:
            raise DeviceError(f"vkCreateInstance failed: {type(err).__name__}") from err
        self.messenger = self._messenger() if "VK_EXT_debug_utils" in enabled_ext else None

    def _messenger(self) -> Any:
        v = vk
        create = v.vkGetInstanceProcAddr(self.handle, "vkCreateDebugUtilsMessengerEXT")
        severity = (v.VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT |
                    v.VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT)
        kinds = (v.VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT |
                 v.VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                 v.VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT)
        info = v.VkDebugUtilsMessengerCreateInfoEXT(messageSeverity=severity,
                                                    messageType=kinds,
                                                    pfnUserCallback=_on_message)
        return create(self.handle, info, None)


def _on_message(severity, kinds, data, user) -> int:
    """The debug-utils callback: keep the message (VK_FALSE: the call goes on)."""
    text = vk.ffi.string(data.pMessage).decode(errors="replace") if data.pMessage else "?"
    with _messages_lock:
        _messages.append(text)
    return 0


def _validation_features(v) -> list[int]:
    """The layer's checks beyond the API's rules, by $GRAPHC_VULKAN_VALIDATION: "sync"
    (synchronization validation: a missing barrier between dependent dispatches), "gpu"
    (GPU-assisted validation: shader accesses outside a binding), "all" (both; "1" too)."""
    mode = os.environ.get(VALIDATION_ENV, "").strip().lower()
    sync = v.VK_VALIDATION_FEATURE_ENABLE_SYNCHRONIZATION_VALIDATION_EXT
    gpu = v.VK_VALIDATION_FEATURE_ENABLE_GPU_ASSISTED_EXT
    return {"sync": [sync], "gpu": [gpu], "all": [sync, gpu], "1": [sync, gpu]}.get(mode, [])


def _instance_extensions(layer: str | None = None) -> set[str]:
    try:
        return {e.extensionName for e in vk.vkEnumerateInstanceExtensionProperties(layer)}
    except Exception:       # an old or broken loader
        return set()


def _instance_layers() -> set[str]:
    try:
        return {layer.layerName for layer in vk.vkEnumerateInstanceLayerProperties()}
    except Exception:
        return set()


@functools.cache
def instance() -> Instance:
    """The process's one instance (created on first use)."""
    return Instance()


def physical_devices() -> list[Any]:
    """Every physical device of the instance; [] without a loader or a driver."""
    if vk is None:
        return []
    try:
        return list(vk.vkEnumeratePhysicalDevices(instance().handle))
    except (DeviceError, Exception):     # no ICD: VkErrorInitializationFailed and kin
        return []
