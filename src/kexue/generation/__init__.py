"""kexue.generation"""
