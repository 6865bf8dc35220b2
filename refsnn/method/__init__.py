"""The paper, one file per idea (docs/method.md §2-11).

parametrize   Eq. 9-11    learnable widths and temporal length, straight-through
weight_quant  Eq. 6, 18-19, App. A.8-A.9
neuron        Eq. 12-17, 20, App. A.6-A.7, A.10-A.13, docs/method.md §6.5-6.6
renewal       Alg. 1-2, Eq. 24-25, the switching-off rule
budget        Eq. 7-8, App. A.6 (cost model)
regulate      Eq. 21
conventions   docs/method.md §10 (paper vs official code)
protocol      the layer protocol (LayerWidths, LayerCost) and the one W/S/T average (docs/method.md §2)
"""
from . import budget, conventions, neuron, parametrize, protocol, regulate, renewal, weight_quant
from .budget import LayerCost, ModelCost, model_cost, parse_wst, uniform
from .conventions import OFFICIAL, PAPER, Convention, check_convention, get_convention
from .neuron import emitted_spikes, membrane_potentials, spiking_neuron
from .parametrize import parametrized_width, width_value
from .protocol import LayerWidths, SpikingLayerProtocol, weighted_average, wst_averages
from .regulate import Penalties, Targets, model_averages, regulating_loss
from .renewal import grid_search, observe, renewed_step, should_switch_off
from .weight_quant import quantize_weight

__all__ = ["budget", "conventions", "neuron", "parametrize", "protocol", "regulate", "renewal", "weight_quant",
           "LayerCost", "ModelCost", "model_cost", "parse_wst", "uniform", "Convention", "PAPER", "OFFICIAL",
           "get_convention", "check_convention", "spiking_neuron", "membrane_potentials", "emitted_spikes",
           "LayerWidths", "SpikingLayerProtocol", "weighted_average", "wst_averages", "parametrized_width", "width_value", "Penalties", "Targets", "model_averages",
           "regulating_loss", "grid_search", "observe", "renewed_step", "should_switch_off", "quantize_weight"]
