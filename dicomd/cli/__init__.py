"""
The DCMTK-compatible front doors: C{dicomd storescp}, C{dicomd storescu},
C{dicomd qrscp}, C{dicomd echoscu}.  Each translates its tool's command
line into the same service objects the twistd plugin runs.
"""
