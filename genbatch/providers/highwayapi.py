"""HighwayAPI (api.highwayapi.ai, jiekou.ai's China domain): Novita's protocol, its own rules.

Same `/v3/async` submit and task-result calls and, inferred, the same error envelope
(docs/wire/highwayapi.md), so the adapter is Novita's with a different model table.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from genbatch.providers import novita, pricing
from genbatch.providers.plugin import Callbacks, Capability, Limits, Outputs, ProviderPlugin

# 1.5 pro at 1080p is in conflict (§8 q1): the English page (SEED-HW15) lists 480p/720p/1080p,
# the Chinese page crawled 2026-02-26 (JK-15ZH) says 1080p is "not yet supported". We follow
# SEED-HW15, the page the brief names; a 1080p request may still be refused with a 400.
SEEDANCE_V15_PRO = replace(
    novita.SEEDANCE_V15_PRO, resolutions=frozenset({"480p", "720p", "1080p"})
)
# V1 pro / lite: `aspect_ratio`, duration 5|10, 480p/720p/1080p (JK-3P-NEWAPI), as on Novita.
MODELS = MappingProxyType(
    {s.name: s for s in (SEEDANCE_V15_PRO, novita.SEEDANCE_V1_PRO, novita.SEEDANCE_V1_LITE)}
)


class HighwayAPIProvider(novita.NovitaProvider):
    """HighwayAPI: Seedance 1.5 pro, V1 pro and V1 lite image-to-video."""

    name = "highwayapi"
    specs = MODELS


PLUGIN = ProviderPlugin(
    name="highwayapi",
    summary="HighwayAPI (jiekou.ai): Seedance 1.5 pro, V1 pro and V1 lite on Novita's protocol",
    adapter=HighwayAPIProvider,
    models=MODELS,
    limits=Limits(base_url="https://api.highwayapi.ai", max_in_flight=20, submit_rpm=200,
                  poll_rpm=1200),
    outputs=Outputs(video_hosts=(*novita.VIDEO_HOSTS, "*.highwayapi.ai", "*.jiekou.ai",
                                 "*.novita.ai")),
    prices=pricing.HIGHWAYAPI,
    callbacks=Callbacks(parse=novita.parse_callback),
    capabilities=frozenset({Capability.CALLBACKS}),
)
