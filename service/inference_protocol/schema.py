"""The protocol's JSON objects, named as the Open Inference Protocol's REST spec names them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

Parameters = dict[str, Any]


class _Object(BaseModel):
    model_config = ConfigDict(protected_namespaces=())


class ServerMetadata(_Object):
    name: str
    version: str
    extensions: list[str]


class ServerLive(_Object):
    live: bool


class ServerReady(_Object):
    ready: bool


class ModelReady(_Object):
    name: str
    ready: bool


class MetadataTensor(_Object):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 where the size varies.")


class ModelMetadata(_Object):
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class RequestInput(_Object):
    name: StrictStr
    shape: list[Annotated[StrictInt, Field(ge=0)]]
    datatype: StrictStr
    parameters: Parameters = Field(default_factory=dict)
    data: Any = None
    """Flat or nested, row-major; absent when the tensor comes as binary data."""


class RequestOutput(_Object):
    name: StrictStr
    parameters: Parameters = Field(default_factory=dict)


class InferenceRequest(_Object):
    id: StrictStr | None = None
    parameters: Parameters = Field(default_factory=dict)
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None
    """Omitted: every output of the model."""


class ResponseOutput(_Object):
    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = None


class InferenceResponse(_Object):
    """The JSON part of a response; binary outputs follow it, after
    ``Inference-Header-Content-Length`` bytes."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class ErrorObject(_Object):
    error: str
