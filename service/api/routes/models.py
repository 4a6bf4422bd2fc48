from fastapi import APIRouter

from service.api.deps import RegistryDep
from service.api.schemas import ModelInfo, ModelList, SamplingInfo, error_responses
from service.generation import autoregressive
from service.registry.registry import LoadedModel, ModelState

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=ModelList)
async def list_models(registry: RegistryDep) -> ModelList:
    """Every model of the store, ready or not."""
    return ModelList(models=[model_info(m) for m in registry.models.values()])


@router.get("/{name}", response_model=ModelInfo, responses=error_responses(404))
async def get_model(name: str, registry: RegistryDep) -> ModelInfo:
    """One model: family, version, operations, shapes, the card's metrics, the provider."""
    return model_info(registry.get(name))


def model_info(model: LoadedModel) -> ModelInfo:
    card = model.card
    return ModelInfo(
        name=model.name,
        state=model.state.value,
        reason=model.reason,
        version=model.version,
        family=card.family if card else None,
        dataset=card.dataset if card else None,
        operations=[op.value for op in model.operations],
        image_shape=list(card.image_shape) if card else None,
        latent_dim=card.latent_dim if card else None,
        conditional=model.family is not None and model.family.conditional,
        class_names=card.class_names if card else None,
        metrics=card.metrics if card else {},
        provider=model.provider,
        providers=model.providers,
        sampling=_sampling(model),
    )


def _sampling(model: LoadedModel) -> SamplingInfo | None:
    family = model.family
    if family is None or not family.autoregressive or model.state is not ModelState.READY:
        return None
    method = autoregressive.sampler_in_use(model)
    times = model.sampling_times
    return SamplingInfo(
        method=method, description=autoregressive.METHODS[method],
        seconds_per_image=times.median(), measured_runs=times.runs,
    )  # fmt: skip
