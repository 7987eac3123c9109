"""The boundary between the operator and its migration pods, as types.

The operator writes a pod's command line (:mod:`lockstep.contract.pod_args`,
:mod:`lockstep.contract.helper_args`); the pod answers in its container's termination message
(:mod:`lockstep.contract.report`). Both sides use these modules, so neither can drift from the
other. Pure: the standard library and :mod:`lockstep.constants` only.
"""
