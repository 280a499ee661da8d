// An Express-style handler (style: http): called with (req, res).
module.exports = (req, res) => {
  res.status(200).json({ example: "node-express", method: req.method, path: req.path, query: req.query });
};
