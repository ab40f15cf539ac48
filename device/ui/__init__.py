"""The Kivy touch UI. Importing this package does not import Kivy; ``device.ui.app`` does."""
