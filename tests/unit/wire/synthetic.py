"""A tiny rest-json service model with the wire features Customer Profiles does not use.

Customer Profiles has no header members, header-prefix maps, payload members, querystring
maps or greedy labels; the wire layer supports them for completeness and is tested here.
"""

from __future__ import annotations

from botocore.model import ServiceModel

SYNTHETIC = ServiceModel(
    {
        "metadata": {
            "apiVersion": "2020-01-01",
            "endpointPrefix": "synthetic",
            "protocol": "rest-json",
            "serviceId": "Synthetic",
            "signatureVersion": "v4",
        },
        "operations": {
            "GetThing": {
                "name": "GetThing",
                "http": {"method": "GET", "requestUri": "/things/{Key+}/view?x-id=GetThing"},
                "input": {"shape": "GetThingInput"},
                "output": {"shape": "GetThingOutput"},
            },
            "GetOther": {
                "name": "GetOther",
                "http": {"method": "GET", "requestUri": "/things/special/view"},
                "input": {"shape": "GetOtherInput"},
            },
            "PutBlob": {
                "name": "PutBlob",
                "http": {"method": "PUT", "requestUri": "/blobs/{Id}", "responseCode": 201},
                "input": {"shape": "PutBlobInput"},
                "output": {"shape": "PutBlobOutput"},
            },
        },
        "shapes": {
            "GetThingInput": {
                "type": "structure",
                "required": ["Key"],
                "members": {
                    "Key": {"shape": "String", "location": "uri", "locationName": "Key"},
                    "Token": {"shape": "String", "location": "header", "locationName": "X-Token"},
                    "Count": {"shape": "Integer", "location": "header", "locationName": "X-Count"},
                    "When": {"shape": "Time", "location": "header", "locationName": "X-When"},
                    "Meta": {
                        "shape": "StringMap",
                        "location": "headers",
                        "locationName": "x-meta-",
                    },
                    "Flag": {"shape": "Boolean", "location": "querystring", "locationName": "flag"},
                    "Since": {"shape": "Time", "location": "querystring", "locationName": "since"},
                    "Filters": {"shape": "ListMap", "location": "querystring"},
                },
            },
            "GetThingOutput": {
                "type": "structure",
                "members": {
                    "ETag": {"shape": "String", "location": "header", "locationName": "ETag"},
                    "Meta": {
                        "shape": "StringMap",
                        "location": "headers",
                        "locationName": "x-meta-",
                    },
                    "Data": {"shape": "Data"},
                },
                "payload": "Data",
            },
            "GetOtherInput": {"type": "structure", "members": {}},
            "PutBlobInput": {
                "type": "structure",
                "required": ["Id"],
                "members": {
                    "Id": {"shape": "Integer", "location": "uri", "locationName": "Id"},
                    "Body": {"shape": "Blob"},
                },
                "payload": "Body",
            },
            "PutBlobOutput": {
                "type": "structure",
                "members": {"Body": {"shape": "Blob"}},
                "payload": "Body",
            },
            "Data": {
                "type": "structure",
                "members": {"Value": {"shape": "String"}, "Raw": {"shape": "Blob"}},
            },
            "BadPattern": {"type": "string", "pattern": "(?<!a+)b"},
            "String": {"type": "string"},
            "Integer": {"type": "integer"},
            "Boolean": {"type": "boolean"},
            "Time": {"type": "timestamp"},
            "Blob": {"type": "blob"},
            "StringMap": {"type": "map", "key": {"shape": "String"}, "value": {"shape": "String"}},
            "StringList": {"type": "list", "member": {"shape": "String"}},
            "ListMap": {
                "type": "map",
                "key": {"shape": "String"},
                "value": {"shape": "StringList"},
            },
        },
    },
    service_name="synthetic",
)
