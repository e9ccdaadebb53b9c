"""A simulated charger's configuration: 1.6 keys and 2.x Component.Variable settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.sim.charger import SimStation

MAX_STACK_LEVEL = 8


@dataclass(slots=True)
class Setting:
    """One configuration key (1.6) or Component.Variable (2.x)."""

    value: str
    readonly: bool = False
    kind: str = "str"  # int | bool | str

    def accepts(self, value: str) -> bool:
        """Whether `value` fits this setting's type."""
        if self.kind == "int":
            return value.isdigit()
        if self.kind == "bool":
            return value.lower() in ("true", "false")
        return len(value) <= 500


def measurands(cfg: SimStation) -> str:
    """What the station samples at first (CSL)."""
    if cfg.measurands is not None:
        return cfg.measurands
    sampled = "Energy.Active.Import.Register,Current.Import,Power.Active.Import,SoC"
    return sampled + ",Energy.Active.Export.Register" if cfg.v2g else sampled


def v16_settings(cfg: SimStation) -> dict[str, Setting]:
    """A realistic OCPP 1.6 key store (OCPP 1.6 §9.1 core, §9.4 smart charging keys)."""
    return {
        "AuthorizeRemoteTxRequests": Setting("false", kind="bool"),
        "ChargeProfileMaxStackLevel": Setting(str(MAX_STACK_LEVEL), True, "int"),
        "ChargingScheduleAllowedChargingRateUnit": Setting("Current,Power", True),
        "ChargingScheduleMaxPeriods": Setting("24", True, "int"),
        "ClockAlignedDataInterval": Setting("0", kind="int"),
        "ConnectionTimeOut": Setting("60", kind="int"),
        "GetConfigurationMaxKeys": Setting("50", True, "int"),
        "HeartbeatInterval": Setting("300", kind="int"),
        "LocalAuthListEnabled": Setting("true", kind="bool"),
        "LocalAuthListMaxLength": Setting("1000", True, "int"),
        "LocalAuthorizeOffline": Setting("true", kind="bool"),
        "LocalPreAuthorize": Setting("false", kind="bool"),
        "MaxChargingProfilesInstalled": Setting("10", True, "int"),
        "MeterValueSampleInterval": Setting(str(int(cfg.meter_interval_s)), kind="int"),
        "MeterValuesSampledData": Setting(measurands(cfg)),
        "MeterValuesSampledDataMaxLength": Setting("8", True, "int"),
        "NumberOfConnectors": Setting(str(cfg.connectors), True, "int"),
        "ResetRetries": Setting("3", kind="int"),
        "SendLocalListMaxLength": Setting("100", True, "int"),
        "StopTransactionOnEVSideDisconnect": Setting("true", kind="bool"),
        "StopTransactionOnInvalidId": Setting("true", kind="bool"),
        "SupportedFeatureProfiles": Setting(
            "Core,FirmwareManagement,LocalAuthListManagement,RemoteTrigger,SmartCharging", True
        ),
        "TransactionMessageAttempts": Setting("3", kind="int"),
        "TransactionMessageRetryInterval": Setting("60", kind="int"),
        "UnlockConnectorOnEVSideDisconnect": Setting("true", kind="bool"),
        "WebSocketPingInterval": Setting("20", kind="int"),
    }


def v2_settings(cfg: SimStation) -> dict[str, Setting]:
    """A small OCPP 2.x device model, keyed "Component.Variable" (2.0.1 appendices §3)."""
    model = {
        "OCPPCommCtrlr.HeartbeatInterval": Setting("300", kind="int"),
        "OCPPCommCtrlr.WebSocketPingInterval": Setting("20", kind="int"),
        "SampledDataCtrlr.TxUpdatedInterval": Setting(str(int(cfg.meter_interval_s)), kind="int"),
        "SampledDataCtrlr.TxEndedInterval": Setting("0", kind="int"),
        "SampledDataCtrlr.TxUpdatedMeasurands": Setting(measurands(cfg)),
        "AuthCtrlr.AuthorizeRemoteStart": Setting("false", kind="bool"),
        "AuthCtrlr.LocalAuthorizeOffline": Setting("true", kind="bool"),
        "LocalAuthListCtrlr.Enabled": Setting("true", kind="bool"),
        "SmartChargingCtrlr.Enabled": Setting("true", True, "bool"),
        "SmartChargingCtrlr.RateUnit": Setting("A,W", True),
        "SmartChargingCtrlr.ProfileStackLevel": Setting(str(MAX_STACK_LEVEL), True, "int"),
        "ChargingStation.SupplyPhases": Setting(str(cfg.phases), True, "int"),
        "SecurityCtrlr.SecurityProfile": Setting("2" if cfg.password else "1", True, "int"),
    }
    if cfg.v2g and cfg.version == "2.1":
        model["V2XChargingCtrlr.SupportedOperationModes"] = Setting(
            "ChargingOnly,CentralSetpoint", True
        )
    return model
