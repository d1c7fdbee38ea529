"""pvpython: LoadPlugin(xml) makes SRNEncoder and SRNReader; record their properties and defaults.

Usage: pvpython load_plugin.py PLUGIN_XML OUT_JSON
"""

import sys

from paraview import servermanager
from paraview.simple import LoadPlugin
from pvcommon import arg, write_json


def describe(group, name):
    proxy = servermanager.ProxyManager().SMProxyManager.GetPrototypeProxy(group, name)
    if proxy is None:
        return None
    props = {}
    it = proxy.NewPropertyIterator()
    it.Begin()
    while not it.IsAtEnd():
        prop = it.GetProperty()
        doc = prop.GetDocumentation()
        entry = {
            "label": prop.GetXMLLabel(),
            "class": prop.GetClassName(),
            "doc": doc.GetDescription().strip() if doc is not None and doc.GetDescription() else "",
            "advanced": prop.GetPanelVisibility() == "advanced",
        }
        if hasattr(prop, "GetNumberOfElements") and not prop.IsA("vtkSMProxyProperty"):
            # A prototype's elements are the XML defaults.
            entry["default"] = [prop.GetElement(i) for i in range(prop.GetNumberOfElements())]
        domain = prop.FindDomain("vtkSMStringListDomain")
        if domain is not None:
            entry["strings"] = [domain.GetString(i) for i in range(domain.GetNumberOfStrings())]
        props[it.GetKey()] = entry
        it.Next()
    groups = [proxy.GetPropertyGroup(i).GetXMLLabel() for i in range(proxy.GetNumberOfPropertyGroups())]
    hints = proxy.GetHints()
    return {
        "label": proxy.GetXMLLabel(),
        "properties": props,
        "groups": groups,
        "hints": hints.GetNumberOfNestedElements() if hints is not None else 0,
    }


before = set(globals())
LoadPlugin(arg(1), remote=False, ns=globals())
ns = {name: value for name, value in globals().items() if name not in before}
result = {
    "functions": sorted(name for name in ("SRNEncoder", "SRNReader") if callable(ns.get(name))),
    "SRNEncoder": describe("filters", "SRNEncoder"),
    "SRNReader": describe("sources", "SRNReader"),
}
write_json(arg(2), result)
print("load_plugin.py done")
sys.stdout.flush()
