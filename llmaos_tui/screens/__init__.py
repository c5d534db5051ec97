"""Screens: they arrange widgets over the fleet state and post what the operator asks for."""
