"""kexue.regularizers"""
