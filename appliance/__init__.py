"""The appliance's admin console (`iscsiha-console`): a configshell tree over the desired state."""
