"""aae_core: the method of "Adversarial Autoencoders" (Makhzani et al., 2015).

Depends on torch and numpy only; never imports `bench`.
"""
